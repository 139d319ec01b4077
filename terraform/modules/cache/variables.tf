# Inputs of the cache module: the bucket, where the store lives inside it, and how it is kept.

variable "bucket_name" {
  description = "Name of the S3 bucket that holds the nixship store (binary cache, releases, status); null to have one generated from bucket_prefix. Give exactly one of the two."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3 to 63 lower-case letters, digits, '.' or '-'."
  }
}

variable "bucket_prefix" {
  description = "Beginning of a generated, unique bucket name (Terraform adds 26 characters), instead of bucket_name; e.g. \"nixship-store-\"."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_prefix == null || can(regex("^[a-z0-9][a-z0-9.-]{0,36}$", var.bucket_prefix))
    error_message = "bucket_prefix must be 1 to 37 lower-case letters, digits, '.' or '-', starting with a letter or digit."
  }
}

variable "versioning" {
  description = "Keep old versions of overwritten objects (channels, status) in the bucket."
  type        = bool
  default     = false
}

variable "noncurrent_version_days" {
  description = "With versioning: days an old version (an overwritten object, or one `nixship cache gc` deleted) is kept before S3 expires it. Without this, a collection would free nothing."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1 && floor(var.noncurrent_version_days) == var.noncurrent_version_days
    error_message = "noncurrent_version_days must be a whole number of days, at least 1."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the bucket even when it still holds objects."
  type        = bool
  default     = false
}

variable "prefix" {
  description = "Key prefix of the store inside the bucket (\"\" for the whole bucket), e.g. \"nix\" for s3://BUCKET/nix."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?/?$", var.prefix)) && !can(regex("(^|/)\\.\\.?(/|$)", var.prefix))
    error_message = "prefix must be empty or path segments of letters, digits, '_', '.' and '-' separated by '/' (no '.' or '..' segments, no wildcards)."
  }
}

variable "tags" {
  description = "Tags for the bucket and the IAM policies."
  type        = map(string)
  default     = {}
}
