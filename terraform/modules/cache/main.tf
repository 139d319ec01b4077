# The nixship store on S3: one private, encrypted bucket (TLS only) that holds the Nix binary
# cache, the signed releases and the hosts' status, and the least-privilege policies that
# hosts, agents, deployers, readers and the garbage collector attach (see README.md for who
# gets which).

locals {
  # The bucket's name: bucket_name, or the one generated from bucket_prefix. The policies are
  # named after it, and their resources follow the bucket's ARN.
  bucket = aws_s3_bucket.this.bucket

  # "" or "PREFIX/": every key of the store starts with it.
  key_prefix = trim(var.prefix, "/") == "" ? "" : "${trim(var.prefix, "/")}/"
  store_arn  = "${aws_s3_bucket.this.arn}/${local.key_prefix}"

  # The keys stock Nix reads from a binary cache: nix-cache-info, <32-character hash>.narinfo
  # (each ? is one character, so no other key ending in .narinfo matches) and nar/<file>; and
  # nixship's deltas: delta/<nix32>.nar, which hosts fetch as Nix fetches a NAR, and the notes of
  # pairs not worth a delta (delta/skip/<target>-<base>.json).
  narinfo_key    = "????????????????????????????????.narinfo"
  cache_keys     = ["nix-cache-info", local.narinfo_key, "nar/*", "delta/*"]
  cache_objects  = [for key in local.cache_keys : "${local.store_arn}${key}"]
  cache_prefixes = [for key in local.cache_keys : "${local.key_prefix}${key}"]

  # What a garbage collection may delete: narinfos, the <hash>.ls listings Nix writes beside
  # them, NARs, and deltas with their skip notes (they go with their targets). Not
  # nix-cache-info, and nothing outside the cache.
  collectable_keys    = [local.narinfo_key, "????????????????????????????????.ls", "nar/*", "delta/*"]
  collectable_objects = [for key in local.collectable_keys : "${local.store_arn}${key}"]

  # `nixship cache gc`'s own keys: the collector's lock, a lease per push or deploy in
  # progress, the pins that keep paths by name, and the reports of past collections.
  gc_lock_object = "${local.store_arn}gc/lock.json"
  lease_objects  = ["${local.store_arn}gc/leases/*"]
  pin_objects    = ["${local.store_arn}gc/pins/*"]
  report_objects = ["${local.store_arn}gc/reports/*"]
  gc_prefixes    = [for key in ["gc/lock.json", "gc/leases/*", "gc/pins/*", "gc/reports/*"] : "${local.key_prefix}${key}"]

  # Release manifests, the shards of sharded releases, and the channels that point at them.
  release_keys     = ["releases/*", "release-shards/*", "channels/*"]
  release_objects  = [for key in local.release_keys : "${local.store_arn}${key}"]
  release_prefixes = [for key in local.release_keys : "${local.key_prefix}${key}"]

  # Every host's status: records, release markers, heartbeats, host keys.
  status_objects  = ["${local.store_arn}status/*"]
  status_prefixes = ["${local.key_prefix}status/*"]

  # An IAM policy variable, not a Terraform one ($$ keeps it literal): the value of the
  # nixship-host tag of the role making the request, i.e. the host's own name.
  own_host = "$${aws:PrincipalTag/nixship-host}"
  # The host's own secrets bundles (ciphertexts, which only its host key opens).
  own_secrets_objects = ["${local.store_arn}secrets/${local.own_host}/*"]
  # The host's SSH host key, which its agent publishes: it reads the key there first, so as to
  # write only a changed one.
  own_host_key_key = "status/host-keys/${local.own_host}.pub"
  own_record_key   = "status/hosts/${local.own_host}.json"

  # Exactly the status keys an agent writes: its record, a marker per state it reaches on a
  # release (status/releases/CHANNEL/SEQ/HOST/STATE), its heartbeat per state
  # (status/heartbeats/HOST/STATE/EVERY) and its host key. Readers take a bounded number of
  # keys under each host's prefix, so what else a host could write there costs them nothing.
  own_status_objects = concat(
    ["${local.store_arn}${local.own_record_key}"],
    [for state in ["applying", "success", "failed", "rejected"] :
    "${local.store_arn}status/releases/*/*/${local.own_host}/${state}"],
    [for state in ["running", "paused"] :
    "${local.store_arn}status/heartbeats/${local.own_host}/${state}/*"],
    ["${local.store_arn}${local.own_host_key_key}"],
  )
  # An IAM * spans "/": without these, status/releases/*/*/HOST/STATE would also grant
  # status/releases/C/S/OTHER/x/HOST/STATE, a key under another host's name (as many as it
  # likes), and HOST/running/* keys of any depth. No nixship key has more segments than these.
  deeper_status_objects = [
    "${local.store_arn}status/releases/*/*/*/*/*",
    "${local.store_arn}status/heartbeats/*/*/*/*",
  ]
}

resource "aws_s3_bucket" "this" {
  bucket        = var.bucket_name
  bucket_prefix = var.bucket_name == null ? var.bucket_prefix : null
  force_destroy = var.force_destroy
  tags          = var.tags

  lifecycle {
    precondition {
      condition     = (var.bucket_name == null) != (var.bucket_prefix == null)
      error_message = "Give exactly one of bucket_name (a fixed name) and bucket_prefix (a generated one)."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# Created only when asked for: removing it later suspends versioning, which S3 allows, while
# "Disabled" can never be set again once a bucket was versioned.
resource "aws_s3_bucket_versioning" "this" {
  count  = var.versioning ? 1 : 0
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

# Pushes upload large NARs in parts; parts of an upload that never completed cost money until
# they are aborted. With versioning, what `nixship cache gc` deletes (and every object
# overwritten) stays as a noncurrent version, so the collection would free nothing: those go
# after noncurrent_version_days, and the delete markers left alone with them.
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  dynamic "rule" {
    for_each = var.versioning ? [var.noncurrent_version_days] : []
    content {
      id     = "expire-noncurrent-versions"
      status = "Enabled"

      filter {}

      noncurrent_version_expiration {
        noncurrent_days = rule.value
      }

      expiration {
        expired_object_delete_marker = true
      }
    }
  }

  # A lifecycle configuration set before versioning is on is refused for a versioned rule.
  depends_on = [aws_s3_bucket_versioning.this]
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.tls_only.json

  # Two changes to a bucket's access settings at once fail with OperationAborted.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Hosts that substitute from the cache (ssm and ssh hosts): read the cache keys, nothing else.
data "aws_iam_policy_document" "host_read" {
  statement {
    sid       = "ReadCache"
    actions   = ["s3:GetObject"]
    resources = local.cache_objects
  }

  # Only so that a missing key answers 404 rather than 403 (S3 checks ListBucket with the key
  # as s3:prefix): the host can list cache keys only.
  statement {
    sid       = "ListCacheKeys"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.cache_prefixes
    }
  }
}

# CI or the deployer: push to the cache, publish releases and move channels, record the
# status of push deploys (ssh, ssm) and read every host's status.
data "aws_iam_policy_document" "writer" {
  statement {
    sid       = "WriteCacheAndReleases"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    resources = concat(local.cache_objects, local.release_objects)
  }

  # A publisher that loses a race withdraws the release file it wrote.
  statement {
    sid       = "WithdrawReleases"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.store_arn}releases/*"]
  }

  # A delta whose pair turned out not worth it replaces its skip note, and the note goes when a
  # delta replaces it.
  statement {
    sid       = "ReplaceDeltaSkipNotes"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.store_arn}delta/skip/*"]
  }

  statement {
    sid       = "ReadStatus"
    actions   = ["s3:GetObject"]
    resources = local.status_objects
  }

  # Agent hosts' secrets bundles (ciphertexts only), stored before the release names them.
  statement {
    sid       = "WriteSecretsBundles"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.store_arn}secrets/*"]
  }

  # ssh and ssm deploys leave each host's record as agents do; the per-release progress
  # markers stay the agents' own. Every deploy also keeps its rollout record (what the
  # dashboard shows of a rollout as it runs).
  statement {
    sid       = "WriteHostRecords"
    actions   = ["s3:PutObject"]
    resources = ["${local.store_arn}status/hosts/*", "${local.store_arn}status/rollouts/*"]
  }

  # A push or deploy holds a lease while it runs, so that no garbage collection sweeps what it
  # found already in the cache; it reads the lock to see whether a collection runs first.
  statement {
    sid       = "HoldLeases"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = local.lease_objects
  }

  statement {
    sid       = "ReadGcLock"
    actions   = ["s3:GetObject"]
    resources = [local.gc_lock_object]
  }

  # `cache pin`, `cache unpin` and `cache pins`. A pin only keeps paths; removing one lets the
  # next collection take what it alone kept.
  statement {
    sid       = "WritePins"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = local.pin_objects
  }

  # The whole store, gc/ included: releases are numbered from a listing, deploys list status
  # markers, `cache pins` lists gc/pins/, and a missing key answers 404 rather than 403.
  statement {
    sid       = "ListStore"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.key_prefix}*"]
    }
  }
}

# Whoever only looks (a plan in a pull request, `nixship status --stored`, a dashboard): read
# the cache, the channels and releases, and every host's status; write nothing.
data "aws_iam_policy_document" "reader" {
  statement {
    sid       = "ReadCacheReleasesAndStatus"
    actions   = ["s3:GetObject"]
    resources = concat(local.cache_objects, local.release_objects, local.status_objects)
  }

  # Only so that a missing key answers 404 rather than 403, and status markers can be listed.
  statement {
    sid       = "ListReadableKeys"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = concat(local.cache_prefixes, local.release_prefixes, local.status_prefixes)
    }
  }
}

# Whoever runs `nixship cache gc` (an operator, or a scheduled job): read the roots (releases,
# channels, status, pins) and the narinfos, hold the collection lock, tidy leases that lapsed,
# and delete the cache's own objects, and the secrets bundles and release shards no release
# names. It writes no cache object, reads no NAR or secret, and deletes no release, channel or
# status: those are what roots the cache.
data "aws_iam_policy_document" "collector" {
  # nix-cache-info first, which every cache command reads to know the store is a cache.
  statement {
    sid     = "ReadRootsAndNarInfos"
    actions = ["s3:GetObject"]
    resources = concat(
      ["${local.store_arn}nix-cache-info", "${local.store_arn}${local.narinfo_key}"],
      local.release_objects,
      local.status_objects,
      local.pin_objects,
    )
  }

  # DeleteObjects (a batch of keys) is authorized as s3:DeleteObject on each key.
  statement {
    sid       = "DeleteCacheObjects"
    actions   = ["s3:DeleteObject"]
    resources = local.collectable_objects
  }

  # Beside them, what no kept release names any more: a host's secrets bundles (ciphertexts,
  # never read: their keys and ages come from a listing) and the shards of a release whose file
  # is gone (a publisher that lost a race, or died). Release files and channels stay.
  statement {
    sid       = "DeleteUnnamedBundlesAndShards"
    actions   = ["s3:DeleteObject"]
    resources = ["${local.store_arn}secrets/*", "${local.store_arn}release-shards/*"]
  }

  # One collection at a time: a conditional put (If-None-Match, or If-Match to take over from
  # a collector that died, judged by a GET), then a HEAD (authorized as GetObject) and a
  # delete to give it back.
  statement {
    sid       = "HoldGcLock"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [local.gc_lock_object]
  }

  # Each collection keeps its report (every path it deleted) under gc/reports/, and deletes
  # all but the newest 20.
  statement {
    sid       = "KeepGcReports"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = local.report_objects
  }

  # The collector takes no lease: it reads them to count the live ones, and deletes those whose
  # writer died (not renewed within 10 minutes).
  statement {
    sid       = "TidyLapsedLeases"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = local.lease_objects
  }

  # The store's root (s3:prefix exactly the key prefix), which the inventory lists with
  # StartAfter, jumping over each folder; the folders it reads; and the keys it GETs, so that a
  # missing one answers 404. A root listing shows every key's name, but reads no object.
  statement {
    sid       = "ListCollectedKeys"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = concat(
        [local.key_prefix, "${local.key_prefix}nix-cache-info", "${local.key_prefix}${local.narinfo_key}", "${local.key_prefix}nar/*", "${local.key_prefix}delta/*"],
        local.release_prefixes,
        local.status_prefixes,
        local.gc_prefixes,
        ["${local.key_prefix}secrets/*"],
      )
    }
  }
}

# The pull agent on each host: read the cache, the channels and the releases; write only its
# own status record and progress markers, named by the nixship-host tag of its role.
data "aws_iam_policy_document" "agent" {
  statement {
    sid       = "ReadCacheAndReleases"
    actions   = ["s3:GetObject"]
    resources = concat(local.cache_objects, local.release_objects)
  }

  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["s3:GetObject"]
    resources = local.own_secrets_objects
  }

  # Its host key, which it reads before it publishes it, and its own record, which it reads
  # after a boot and to report drift.
  statement {
    sid       = "ReadOwnHostKeyAndRecord"
    actions   = ["s3:GetObject"]
    resources = ["${local.store_arn}${local.own_host_key_key}", "${local.store_arn}${local.own_record_key}"]
  }

  statement {
    sid       = "WriteOwnStatus"
    actions   = ["s3:PutObject"]
    resources = local.own_status_objects
  }

  statement {
    sid       = "NoDeeperStatusKeys"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = local.deeper_status_objects
  }

  # Only so that a missing key (no channel yet, its host key not yet published) answers 404
  # rather than 403.
  statement {
    sid       = "ListReadableKeys"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = concat(
        local.cache_prefixes,
        local.release_prefixes,
        ["${local.key_prefix}${local.own_host_key_key}", "${local.key_prefix}${local.own_record_key}"],
      )
    }
  }
}

resource "aws_iam_policy" "host_read" {
  name        = "${local.bucket}-host-read"
  description = "nixship: read the binary cache in s3://${local.bucket}/${local.key_prefix}"
  policy      = data.aws_iam_policy_document.host_read.json
  tags        = var.tags
}

resource "aws_iam_policy" "writer" {
  name        = "${local.bucket}-writer"
  description = "nixship: push to the cache and publish releases in s3://${local.bucket}/${local.key_prefix}"
  policy      = data.aws_iam_policy_document.writer.json
  tags        = var.tags
}

resource "aws_iam_policy" "agent" {
  name        = "${local.bucket}-agent"
  description = "nixship agent: read the cache and releases, write its own status in s3://${local.bucket}/${local.key_prefix}"
  policy      = data.aws_iam_policy_document.agent.json
  tags        = var.tags
}

resource "aws_iam_policy" "reader" {
  name        = "${local.bucket}-reader"
  description = "nixship: read the cache, releases and status in s3://${local.bucket}/${local.key_prefix}"
  policy      = data.aws_iam_policy_document.reader.json
  tags        = var.tags
}

resource "aws_iam_policy" "collector" {
  name        = "${local.bucket}-collector"
  description = "nixship cache gc: read the roots, hold the gc lock, delete unrooted narinfos and NARs in s3://${local.bucket}/${local.key_prefix}"
  policy      = data.aws_iam_policy_document.collector.json
  tags        = var.tags
}
