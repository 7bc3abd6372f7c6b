/*
 * The one place where ZooKeeper's return codes become disco's.
 */
#include <zookeeper/zookeeper.h>

#include "internal.h"

int disco_translate_zk_error(int zk_rc) {
  switch (zk_rc) {
    case ZOK:
      return 0;
    case ZNONODE:
      return DISCO_ENONODE;
    case ZNODEEXISTS:
      return DISCO_ENODEEXISTS;
    case ZBADVERSION:
      return DISCO_EBADVERSION;
    case ZNOTEMPTY:
      return DISCO_ENOTEMPTY;
    case ZNOAUTH:
      return DISCO_ENOAUTH;
    case ZCONNECTIONLOSS:
    case ZOPERATIONTIMEOUT:
      /* The request may or may not have reached the server. */
      return DISCO_ECONNLOSS;
    case ZSESSIONEXPIRED:
    case ZINVALIDSTATE: /* what a handle returns once its session expired */
      return DISCO_ESESSIONEXPIRED;
    case ZAUTHFAILED:
    case ZSESSIONCLOSEDREQUIRESASLAUTH:
      return DISCO_EAUTHFAILED;
    case ZCLOSING:
      return DISCO_ECLOSED;
    case ZBADARGUMENTS:
    case ZINVALIDACL:
    case ZNOCHILDRENFOREPHEMERALS:
      return DISCO_EINVAL;
    default:
      return DISCO_EZK;
  }
}
