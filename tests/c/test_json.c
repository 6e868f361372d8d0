/* The JSON index and writer. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "sp_json.h"
#include "sp_test.h"

static sp_json_index ix;

static int parse(const char *s) {
    const char *err = NULL;
    size_t pos = 0;
    return sp_json_index_parse(&ix, s, strlen(s), &err, &pos);
}

static void check_error(const char *s, const char *msg, size_t at) {
    const char *err = NULL;
    size_t pos = 99999;
    int rc = sp_json_index_parse(&ix, s, strlen(s), &err, &pos);
    SP_CHECK_INT(rc, -1);
    if (rc == -1) {
        SP_CHECK_MEM(err, strlen(err), msg);
        SP_CHECK_INT(pos, at);
    }
}

static const sp_json_field *field(const char *name) {
    int i = sp_json_index_find(&ix, name, strlen(name));
    return i < 0 ? NULL : &ix.fields[i];
}

static void fields_of_every_type(void) {
    SP_CHECK_INT(parse(" { \"s\" : \"a\\\"b\", \"n\":-1.5e3,\"t\":true,\"f\":false,"
                       "\"z\":null,\"o\":{\"x\":[1,{}]},\"a\":[ ] } "), 0);
    SP_CHECK_INT(ix.n, 7);
    SP_CHECK_INT(ix.root_type, SP_JSON_OBJECT);
    const sp_json_field *f = field("s");
    SP_CHECK(f && f->type == SP_JSON_STRING && f->val_escaped);
    SP_CHECK_MEM(f->val, f->val_len, "a\\\"b");
    f = field("n");
    SP_CHECK(f && f->type == SP_JSON_NUMBER);
    SP_CHECK(sp_json_number(f->val, f->val_len) == -1500.0);
    SP_CHECK(field("t")->type == SP_JSON_TRUE);
    SP_CHECK(field("f")->type == SP_JSON_FALSE);
    SP_CHECK(field("z")->type == SP_JSON_NULL);
    f = field("o");
    SP_CHECK(f && f->type == SP_JSON_OBJECT);
    SP_CHECK_MEM(f->val, f->val_len, "{\"x\":[1,{}]}");
    f = field("a");
    SP_CHECK(f && f->type == SP_JSON_ARRAY);
    SP_CHECK_MEM(f->val, f->val_len, "[ ]");
    SP_CHECK(field("missing") == NULL);
}

static void keys(void) {
    SP_CHECK_INT(parse("{\"k\":1,\"k\":2,\"\\u0041b\":3}"), 0);
    SP_CHECK_MEM(field("k")->val, 1, "2"); /* the last duplicate wins */
    SP_CHECK(field("Ab") != NULL);          /* escaped keys match unescaped */
    /* however long (tests/fuzz/targets/fuzz_json found one of 300 bytes
     * that lookups missed) */
    char name[300], text[400];
    memset(name, 'k', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(text, sizeof text, "{\"\\u006b%s\":1}", name + 1);
    SP_CHECK_INT(parse(text), 0);
    SP_CHECK(field(name) != NULL);
}

static void unescape(void) {
    const char *in = "a\\n\\t\\u00e9\\ud83d\\ude00\\/";
    char out[64];
    size_t n = sp_json_unescape(in, strlen(in), out);
    SP_CHECK_MEM(out, n, "a\n\t\xc3\xa9\xf0\x9f\x98\x80/");
}

static void roots(void) {
    /* an array's elements are indexed without keys (a schema's lists) */
    SP_CHECK_INT(parse("[1, \"a\\n\", [2], null]"), 0);
    SP_CHECK_INT(ix.root_type, SP_JSON_ARRAY);
    SP_CHECK_INT(ix.n, 4);
    SP_CHECK_MEM(ix.fields[0].val, ix.fields[0].val_len, "1");
    SP_CHECK_MEM(ix.fields[1].val, ix.fields[1].val_len, "a\\n");
    SP_CHECK_INT(ix.fields[1].val_escaped, 1);
    SP_CHECK_MEM(ix.fields[2].val, ix.fields[2].val_len, "[2]");
    SP_CHECK_INT(ix.fields[3].type, SP_JSON_NULL);
    SP_CHECK_INT(sp_json_index_find(&ix, "", 0), -1);
    SP_CHECK_INT(parse("42"), 0);
    SP_CHECK_INT(ix.root_type, SP_JSON_NUMBER);
    SP_CHECK_INT(parse("\"s\""), 0);
    SP_CHECK_INT(ix.root_type, SP_JSON_STRING);
}

static void malformed(void) {
    check_error("", "empty value", 0);
    check_error("   ", "empty value", 3);
    check_error("{\"a\":1", "unterminated object", 6);
    check_error("{\"a\":01}", "invalid number", 6);
    check_error("{\"a\":-}", "invalid number", 6);
    check_error("{\"a\":1.}", "invalid number", 7);
    check_error("{\"a\":.5}", "unexpected character", 5);
    check_error("{\"a\":1e}", "invalid number", 7);
    check_error("{\"a\":\"x\ny\"}", "control character in string", 7);
    check_error("{\"a\":\"\\x\"}", "invalid escape", 6);
    check_error("{\"a\":\"\\u12g4\"}", "invalid \\u escape", 6);
    check_error("{\"a\":\"abc", "unterminated string", 9);
    check_error("{\"a\":1} x", "trailing characters", 8);
    check_error("{a:1}", "expected a string key", 1);
    check_error("{\"a\" 1}", "expected ':'", 5);
    check_error("{\"a\":1 \"b\":2}", "expected ',' or '}'", 7);
    check_error("{\"a\":tru}", "unexpected character", 5);
    check_error("{\"a\":[1 2]}", "expected ',' or ']'", 8);
}

static void depth(void) {
    char deep[200];
    int n = 0;
    for (int i = 0; i < 64; i++) deep[n++] = '[';
    for (int i = 0; i < 64; i++) deep[n++] = ']';
    deep[n] = '\0';
    SP_CHECK_INT(parse(deep), 0);
    n = 0;
    for (int i = 0; i < 65; i++) deep[n++] = '[';
    for (int i = 0; i < 65; i++) deep[n++] = ']';
    deep[n] = '\0';
    check_error(deep, "nesting too deep", 64);
}

static void many_fields(void) {
    sp_buf b;
    sp_buf_init(&b);
    sp_buf_putc(&b, '{');
    for (int i = 0; i < 1000; i++) {
        char kv[32];
        int len = snprintf(kv, sizeof kv, "%s\"f%d\":%d", i ? "," : "", i, i);
        sp_buf_append(&b, kv, (size_t)len);
    }
    sp_buf_putc(&b, '}');
    const char *err;
    size_t pos;
    SP_CHECK_INT(sp_json_index_parse(&ix, b.data, b.len, &err, &pos), 0);
    SP_CHECK_INT(ix.n, 1000);
    SP_CHECK_MEM(field("f999")->val, 3, "999");
    sp_buf_destroy(&b);
}

static void writer(void) {
    sp_buf b;
    sp_buf_init(&b);
    double vals[] = {0.1, 1 / 3.0, 1e300, 5e-324, -2.5, 123456789012.5, 1e22};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        sp_buf_reset(&b);
        sp_json_write_number(&b, vals[i]);
        SP_CHECK(sp_json_number(b.data, b.len) == vals[i]);
    }
    sp_buf_reset(&b);
    sp_json_write_number(&b, 3.0);
    SP_CHECK_MEM(b.data, b.len, "3");
    sp_buf_reset(&b);
    sp_json_write_number(&b, -0.0);
    SP_CHECK_MEM(b.data, b.len, "0");
    sp_buf_reset(&b);
    sp_json_write_number(&b, 9007199254740992.0);
    SP_CHECK_MEM(b.data, b.len, "9007199254740992");
    sp_buf_reset(&b);
    sp_json_write_number(&b, NAN);
    SP_CHECK_MEM(b.data, b.len, "null");
    sp_buf_reset(&b);
    sp_json_write_number(&b, 0.1);
    SP_CHECK_MEM(b.data, b.len, "0.1");

    /* short decimals take the fast path; every double reads back the same
     * and is no longer than printf's shortest */
    const struct { double v; const char *text; } shorts[] = {
        {2.5, "2.5"}, {-0.001, "-0.001"}, {123.45, "123.45"}, {0.3, "0.3"},
        {1e-7, "1e-07"}, {5.182504009491e-311, "5.182504009491e-311"}, {0.1 + 0.2, "0.30000000000000004"}, {996.99, "996.99"},
        {-1234567.125, "-1234567.125"}, {5e-4, "0.0005"}, {5e-5, "5e-05"}};
    for (size_t i = 0; i < sizeof shorts / sizeof *shorts; i++) {
        sp_buf_reset(&b);
        sp_json_write_number(&b, shorts[i].v);
        SP_CHECK_MEM(b.data, b.len, shorts[i].text);
    }
    uint64_t seed = 88172645463325252ull;
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        double v;
        if (i % 2) { /* any bit pattern */
            memcpy(&v, &seed, sizeof v);
            if (isnan(v) || isinf(v)) continue;
        } else { /* a decimal of up to 9 digits with up to 8 decimals */
            v = (double)(seed % 1000000000) / pow(10, (double)((seed >> 40) % 9));
            if (seed & 1) v = -v;
        }
        sp_buf_reset(&b);
        sp_json_write_number(&b, v);
        char ref[32];
        int rn = 0;
        for (int prec = 1; prec <= 17; prec++) {
            rn = snprintf(ref, sizeof ref, "%.*g", prec, v);
            if (strtod(ref, NULL) == v) break;
        }
        char text[64];
        snprintf(text, sizeof text, "%.*s", (int)b.len, b.data);
        if (strtod(text, NULL) != v || b.len > (size_t)rn + (v == floor(v) ? 24 : 0)) {
            if (bad++ < 5) fprintf(stderr, "number %.17g wrote %s (shortest %s)\n", v, text, ref);
        }
    }
    SP_CHECK_INT(bad, 0);
    /* reading: plain decimals skip strtod and give what it gives */
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        char text[48];
        int n = snprintf(text, sizeof text, "%s%llu.%0*llu", seed & 1 ? "-" : "",
                         (unsigned long long)(seed % 100000000), (int)((seed >> 50) % 8 + 1),
                         (unsigned long long)((seed >> 20) % 10000000));
        if (sp_json_number(text, (size_t)n) != strtod(text, NULL) && bad++ < 5)
            fprintf(stderr, "read %s as %.17g\n", text, sp_json_number(text, (size_t)n));
    }
    SP_CHECK_INT(bad, 0);
    SP_CHECK(signbit(sp_json_number("-0", 2)) && sp_json_number("-0", 2) == 0);
    SP_CHECK(sp_json_number("1.5e3", 5) == 1500);
    SP_CHECK(sp_json_number("12345678901234567", 17) == 12345678901234567.0);

    const char raw[] = "q\"b\\s\n\x01\xc3\xa9";
    sp_buf_reset(&b);
    sp_buf_append(&b, "{\"k\":", 5);
    sp_json_write_string(&b, raw, sizeof raw - 1);
    sp_buf_putc(&b, '}');
    SP_CHECK_MEM(b.data, b.len, "{\"k\":\"q\\\"b\\\\s\\n\\u0001\xc3\xa9\"}");
    const char *err;
    size_t pos;
    SP_CHECK_INT(sp_json_index_parse(&ix, b.data, b.len, &err, &pos), 0);
    char out[32];
    size_t n = sp_json_unescape(ix.fields[0].val, ix.fields[0].val_len, out);
    SP_CHECK_MEM(out, n, raw);
    sp_buf_destroy(&b);
}

/* Strings are UTF-8 with paired surrogate escapes, numbers doubles. */
static void unicode_and_range(void) {
    SP_CHECK_INT(parse("{\"s\":\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\ud83d\\ude00\"}"), 0);
    check_error("\"\xff\"", "invalid UTF-8 in string", 1);
    check_error("\"a\xc0\xaf\"", "invalid UTF-8 in string", 2);       /* overlong */
    check_error("\"\xed\xa0\x80\"", "invalid UTF-8 in string", 1);    /* a surrogate */
    check_error("\"\xf4\x90\x80\x80\"", "invalid UTF-8 in string", 1); /* past U+10FFFF */
    check_error("\"\xe2\x82\"", "invalid UTF-8 in string", 1);        /* cut short */
    check_error("\"\\ud800\"", "lone surrogate in \\u escape", 1);
    check_error("\"\\ud800\\u0041\"", "lone surrogate in \\u escape", 1);
    check_error("\"x\\udc00\"", "lone surrogate in \\u escape", 2);
    SP_CHECK_INT(parse("1e308"), 0);
    check_error("1e999", "number out of range (beyond a double)", 0);
    check_error("[-1E+400]", "number out of range (beyond a double)", 1);
    SP_CHECK_INT(parse("1e-999"), 0); /* underflow reads as 0: in range */
    sp_buf b;
    sp_buf_init(&b);
    SP_CHECK_INT(sp_json_write_string(&b, "\xc3\xa9", 2), 0);
    SP_CHECK_INT(sp_json_write_string(&b, "a\xff", 2), SP_JSON_EUTF8);
    SP_CHECK_MEM(b.data, b.len, "\"\xc3\xa9\"");
    sp_buf_destroy(&b);
}

int main(void) {
    sp_json_index_init(&ix);
    fields_of_every_type();
    keys();
    unescape();
    roots();
    malformed();
    depth();
    many_fields();
    writer();
    unicode_and_range();
    sp_json_index_destroy(&ix);
    return sp_test_summary();
}
