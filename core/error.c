/*
 * Error names and messages, generated from DISCO_ERRNO_MAP, and the one
 * place where libuv's codes become disco's.
 *
 * The map's names go straight to # and ##, never through another macro
 * level: a name such as EOF is also a <stdio.h> macro and would otherwise be
 * expanded to (-1) before it is stringified.
 */
#include "internal.h"

const char *disco_err_name(int err) {
  switch (err) {
#define DISCO__ERR_NAME(name, value, msg)                                      \
  case DISCO_##name:                                                           \
    return #name;
    DISCO_ERRNO_MAP(DISCO__ERR_NAME)
#undef DISCO__ERR_NAME
    default:
      return "EUNKNOWN";
  }
}

const char *disco_strerror(int err) {
  switch (err) {
#define DISCO__ERR_MSG(name, value, msg)                                       \
  case DISCO_##name:                                                           \
    return msg;
    DISCO_ERRNO_MAP(DISCO__ERR_MSG)
#undef DISCO__ERR_MSG
    default:
      return "unknown error";
  }
}

int disco_translate_uv_error(int uv_err) {
  switch (uv_err) {
    case 0:
      return 0;
    case UV_EINVAL:
      return DISCO_EINVAL;
    case UV_ENOMEM:
      return DISCO_ENOMEM;
    case UV_ECANCELED:
      return DISCO_ECANCELED;
    case UV_ETIMEDOUT:
      return DISCO_ETIMEDOUT;
    case UV_EBUSY:
      return DISCO_EBUSY;
    case UV_EAGAIN:
      return DISCO_EAGAIN;
    case UV_ENOENT:
      return DISCO_ENOENT;
    case UV_EACCES:
      return DISCO_EACCES;
    case UV_EADDRINUSE:
      return DISCO_EADDRINUSE;
    case UV_ECONNREFUSED:
      return DISCO_ECONNREFUSED;
    case UV_ECONNRESET:
      return DISCO_ECONNRESET;
    case UV_EPIPE:
      return DISCO_EPIPE;
    case UV_EOF:
      return DISCO_EOF;
    case UV_ENOSYS:
      return DISCO_ENOSYS;
    case UV_ERANGE:
      return DISCO_ERANGE;
    default:
      /* The rest have no close disco equivalent; callers that care about the
       * exact libuv code log uv_err_name() before translating. */
      return DISCO_EIO;
  }
}
