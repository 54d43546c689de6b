/* Input of build.rs's bindgen run: open-iscsi's libopeniscsiusr API, plus
 * vsnprintf so the library's va_list log messages can be formatted in Rust
 * with a va_list type bindgen generated from the same headers. */
#include <stdio.h>
#include <libopeniscsiusr.h>
