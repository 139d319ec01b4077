// The store layer's public API: the ObjectStore seam, its two adapters and the URL factory.
export { FsStore, type FsStoreOptions } from "./fs-store.js";
export { listAll, readAll } from "./helpers.js";
export { compareKeys, validateKey, validatePrefix } from "./keys.js";
export type {
  GetResult,
  ListOptions,
  ListPage,
  ObjectInfo,
  ObjectStore,
  PutCondition,
  PutOptions,
  PutResult,
} from "./object-store.js";
export { S3Store, type S3StoreOptions } from "./s3-store.js";
export { formatStoreUrl, openStore, parseStoreUrl, type StoreUrl } from "./url.js";
