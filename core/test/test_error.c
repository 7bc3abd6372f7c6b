/*
 * Error codes: names and messages come from the one X-macro map, and libuv
 * codes translate through one table.
 */
#include "ctest.h"

typedef struct {
  int code;
  const char *name;
} test_err_t;

/* The map again, stringified here directly: a name such as EOF must come
 * out as "EOF", not as the expansion of the <stdio.h> macro. */
static const test_err_t test_errors[] = {
#define TEST_ERR_ENTRY(name, value, msg) { DISCO_##name, #name },
  DISCO_ERRNO_MAP(TEST_ERR_ENTRY)
#undef TEST_ERR_ENTRY
};

#define TEST_ERR_COUNT (sizeof(test_errors) / sizeof(test_errors[0]))

void test_error_names_distinct(ctest_t *t) {
  size_t i;
  size_t j;

  ASSERT_EQ(t, TEST_ERR_COUNT, 29);
  for (i = 0; i < TEST_ERR_COUNT; i++) {
    ASSERT(t, test_errors[i].code < 0);
    ASSERT_STR_EQ(t, disco_err_name(test_errors[i].code), test_errors[i].name);
    ASSERT(t, strcmp(disco_strerror(test_errors[i].code), "unknown error"));
    ASSERT(t, strlen(disco_strerror(test_errors[i].code)) > 0);
    for (j = 0; j < i; j++) {
      ASSERT(t, test_errors[i].code != test_errors[j].code);
      ASSERT(t, strcmp(disco_err_name(test_errors[i].code),
                       disco_err_name(test_errors[j].code)) != 0);
      ASSERT(t, strcmp(disco_strerror(test_errors[i].code),
                       disco_strerror(test_errors[j].code)) != 0);
    }
  }
  ASSERT_STR_EQ(t, disco_err_name(DISCO_EOF), "EOF");
  ASSERT_STR_EQ(t, disco_strerror(DISCO_EOF), "end of file");
  ASSERT_STR_EQ(t, disco_err_name(DISCO_EINVAL), "EINVAL");
  ASSERT_STR_EQ(t, disco_strerror(DISCO_ECLOSED),
                "handle is closed or closing");
}

void test_error_unknown_code(ctest_t *t) {
  static const int unknown[] = { 0, 1, -1, -4000, -4030, -4095, 123456 };
  size_t i;

  for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    ASSERT_STR_EQ(t, disco_err_name(unknown[i]), "EUNKNOWN");
    ASSERT_STR_EQ(t, disco_strerror(unknown[i]), "unknown error");
  }
}

void test_error_uv_translation(ctest_t *t) {
  static const int table[][2] = {
    { UV_EINVAL, DISCO_EINVAL },
    { UV_ENOMEM, DISCO_ENOMEM },
    { UV_ECANCELED, DISCO_ECANCELED },
    { UV_ETIMEDOUT, DISCO_ETIMEDOUT },
    { UV_EBUSY, DISCO_EBUSY },
    { UV_EAGAIN, DISCO_EAGAIN },
    { UV_ENOENT, DISCO_ENOENT },
    { UV_EACCES, DISCO_EACCES },
    { UV_EADDRINUSE, DISCO_EADDRINUSE },
    { UV_ECONNREFUSED, DISCO_ECONNREFUSED },
    { UV_ECONNRESET, DISCO_ECONNRESET },
    { UV_EPIPE, DISCO_EPIPE },
    { UV_EOF, DISCO_EOF },
    { UV_ENOSYS, DISCO_ENOSYS },
    { UV_ERANGE, DISCO_ERANGE },
    /* No close equivalent: all of these are input/output errors. */
    { UV_EPROTO, DISCO_EIO },
    { UV_E2BIG, DISCO_EIO },
    { UV_EHOSTUNREACH, DISCO_EIO },
    { -99999, DISCO_EIO },
    { 0, 0 },
  };
  size_t i;

  for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
    ASSERT_EQ(t, disco_translate_uv_error(table[i][0]), table[i][1]);
}
