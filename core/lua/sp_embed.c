/* The files compiled into the binary, seen from C. */
#include <string.h>

#include "sp_embed.h"
#include "sp_ffi.h"

/* sp_ffi.h as it was when libsproc was built, so that Lua modules from
 * another build (a source tree's, with a library left from before) are
 * refused rather than calling functions whose shape changed. */
const char *sp_embed_contract(void) {
    for (const sp_embedded *e = sp_embedded_files; e->name; e++)
        if (strcmp(e->name, "sproc.ffi_h") == 0) return e->data;
    return "";
}
