/*
 * Message digests on OpenSSL's libcrypto (EVP) rather than hand-written
 * code: MD5 for Dubbo's metadata revisions.
 */
#include <openssl/evp.h>

#include "internal.h"

/* Lower case, as Dubbo writes revisions. */
static const char disco__hex_digits[] = "0123456789abcdef";

int disco_md5_hex(const void *data, size_t len, char out[33]) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned digest_len;
  unsigned i;

  if (out == NULL || (data == NULL && len > 0))
    return DISCO_EINVAL;
  /* EVP_Digest() reads nothing when len is 0, but wants a valid pointer. */
  if (data == NULL)
    data = "";
  if (EVP_Digest(data, len, digest, &digest_len, EVP_md5(), NULL) != 1 ||
      digest_len != 16)
    return DISCO_EIO;
  for (i = 0; i < 16; i++) {
    out[2 * i] = disco__hex_digits[digest[i] >> 4];
    out[2 * i + 1] = disco__hex_digits[digest[i] & 0x0f];
  }
  out[32] = '\0';
  return 0;
}
