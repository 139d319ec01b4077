// The store layer's public API: the ObjectStore seam, its two adapters and the URL factory.
export { FsStore, type FsStoreOptions } from "./fs-store.js";
export { listAll, readAll } from "./helpers.js";
export { compareKeys, validateKey, validatePrefix } from "./keys.js";
export type {
  GetOptions,
  GetResult,
  ListOptions,
  ListPage,
  NotModified,
  ObjectInfo,
  ObjectStore,
  PutCondition,
  PutOptions,
  PutResult,
  RequestKind,
  RequestStats,
} from "./object-store.js";
// S3Store itself is not re-exported: importing it loads the AWS SDK (~120 ms), which
// openStore does only for s3:// URLs. Import it from "./s3-store.js" where it is needed.
export type { S3StoreOptions } from "./s3-store.js";
export { formatStoreUrl, openStore, parseStoreUrl, type StoreUrl } from "./url.js";
