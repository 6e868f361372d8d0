/* sp_settings: the --set KEY=VALUE pairs, checked before anything runs. A
 * misspelled key must not be ignored: "sproc." keys are sproc's own (a
 * known list, with their kinds of value), the others librdkafka's, and
 * every one is checked whether or not the script makes the client that
 * would take it. */
#ifndef SP_SETTINGS_H
#define SP_SETTINGS_H

/* 0, or -1 with a message (malloc'd, the caller frees it) naming the key,
 * what is wrong and, for an unknown key, the nearest known one. */
int sp_settings_check(const char *const *sets, int nsets, char **msg);

/* Edit distance of two short strings (the "did you mean" hints). */
int sp_settings_distance(const char *a, const char *b);

/* 1 for a Schema Registry setting (schema.registry.url, ...). */
int sp_settings_registry(const char *key);

#endif
