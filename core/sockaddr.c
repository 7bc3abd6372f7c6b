/*
 * The "host:port" text of a socket address, as log lines, request peers
 * and listener addresses show it: "127.0.0.1:20880", "[::1]:20880" (IPv6
 * in brackets, so that the port stays unambiguous).
 */
#include <stdio.h>

#include "internal.h"

int disco__sockaddr_text(const struct sockaddr_storage *addr, char *out,
                         size_t size) {
  char ip[48] = "?";
  int port = 0;

  if (addr->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)addr;
    uv_ip6_name(a6, ip, sizeof(ip));
    port = ntohs(a6->sin6_port);
    snprintf(out, size, "[%s]:%d", ip, port);
  } else if (addr->ss_family == AF_INET) {
    const struct sockaddr_in *a4 = (const struct sockaddr_in *)addr;
    uv_ip4_name(a4, ip, sizeof(ip));
    port = ntohs(a4->sin_port);
    snprintf(out, size, "%s:%d", ip, port);
  } else {
    snprintf(out, size, "?");
  }
  return port;
}

int disco__tcp_peer_text(const uv_tcp_t *tcp, char *out, size_t size) {
  struct sockaddr_storage addr;
  int namelen = sizeof(addr);

  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&addr, &namelen) != 0) {
    snprintf(out, size, "?");
    return 0;
  }
  return disco__sockaddr_text(&addr, out, size);
}
