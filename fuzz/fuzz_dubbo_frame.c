/*
 * libFuzzer entry for the dubbo frame assembler and bodies: the input is
 * split into chunks whose sizes come from the input itself (its first
 * byte seeds them), fed to a framer with a small max_frame, and every
 * complete frame's body is decoded as a request (request frames) or a
 * response (OK response frames), under small hessian2 limits. Checks that
 * frames are never longer than announced nor over the limit.
 */
#include <stdlib.h>
#include <string.h>

#include "disco.h"

#define FUZZ_MAX_FRAME 65536

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void fuzz_frame(const disco_dubbo_frame_t *frame,
                       const disco_h2_limits_t *limits) {
  const disco_dubbo_header_t *h = &frame->header;
  const char *why = NULL;

  if (h->body_len > FUZZ_MAX_FRAME)
    abort();
  if (h->flags & DISCO_DUBBO_FLAG_EVENT)
    return;
  if (h->flags & DISCO_DUBBO_FLAG_REQUEST) {
    disco_dubbo_request_t req;
    if (disco_dubbo_request_decode(frame->body, h->body_len, limits, &req,
                                   &why) == 0) {
      if (req.path == NULL || req.method == NULL || req.param_types == NULL)
        abort();
      (void)disco_dubbo_attachment(req.attachments, "group");
    }
    disco_dubbo_request_free(&req);
  } else if (h->status == DISCO_DUBBO_OK) {
    disco_dubbo_response_t resp;
    if (disco_dubbo_response_decode(frame->body, h->body_len, limits, &resp,
                                    &why) == 0) {
      if (resp.kind < 0 || resp.kind > 5)
        abort();
      if ((resp.kind == 0 || resp.kind == 3) && resp.message == NULL)
        abort();
    }
    disco_dubbo_response_free(&resp);
  }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  disco_dubbo_framer_t *framer;
  disco_dubbo_frame_t frame;
  disco_h2_limits_t limits;
  unsigned seed;
  size_t pos = 0;
  size_t used;
  int rc;

  if (size == 0)
    return 0;
  seed = data[0];
  data++;
  size--;
  disco_h2_limits_init(&limits);
  limits.max_depth = 16;
  limits.max_elements = 4096;
  limits.max_string = 4096;
  limits.max_total = 1 << 20;
  if (disco_dubbo_framer_new(FUZZ_MAX_FRAME, &framer) != 0)
    return 0;
  while (pos < size) {
    /* A chunk of 1 to 64 bytes, or all that is left every 8th time. */
    size_t chunk;
    seed = seed * 1103515245u + 12345u;
    chunk = (seed >> 16) % 8 == 0 ? size - pos : 1 + (seed >> 8) % 64;
    if (chunk > size - pos)
      chunk = size - pos;
    while (chunk > 0) {
      rc = disco_dubbo_framer_feed(framer, (const char *)data + pos, chunk,
                                   &used, &frame);
      if (used > chunk)
        abort();
      pos += used;
      chunk -= used;
      if (rc < 0) {
        if (disco_dubbo_framer_error(framer) == NULL)
          abort();
        disco_dubbo_framer_free(framer);
        return 0;
      }
      if (rc == 1)
        fuzz_frame(&frame, &limits);
      else if (chunk != 0)
        abort(); /* 0 means every byte was consumed */
    }
  }
  disco_dubbo_framer_free(framer);
  return 0;
}
