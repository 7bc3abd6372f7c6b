/*
 * What the HTTP server's replies and the HTTP client's requests both check
 * before writing a header: a name or value that cannot end the header
 * line or section early (no CR, LF or NUL; a name is a non-empty token
 * without ':').
 */
#include "internal.h"

int disco__http_header_ok(const char *s, size_t len, int is_name) {
  size_t i;

  if (s == NULL || (is_name && len == 0))
    return 0;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '\r' || ch == '\n' || ch == '\0')
      return 0;
    if (is_name && (ch <= ' ' || ch == ':' || ch >= 0x7f))
      return 0;
  }
  return 1;
}
