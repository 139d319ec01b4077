# Inputs of the ssm-document module: the document, its name and the defaults baked into it,
# the associations that keep tagged instances on a system, and whom the sender policy may target.

variable "document" {
  description = "The SSM Command document nixship makes, as text: what `nixship ssm document` prints (e.g. file(\"nixship-ssm-document.json\") after `nixship ssm document > nixship-ssm-document.json`), or a nixship build's dist/ssm-document.json."
  type        = string

  validation {
    condition     = can(jsondecode(var.document).parameters.Substituters.allowedPattern) && can(jsondecode(var.document).parameters.TrustedPublicKeys.allowedPattern) && can(jsondecode(var.document).mainSteps[0].inputs.runCommand)
    error_message = "document must be the SSM Command document that `nixship ssm document` prints (JSON with the Substituters and TrustedPublicKeys parameters and an aws:runShellScript step)."
  }
}

variable "name" {
  description = "Name of the SSM document (the fleet file's \"ssm.documentName\")."
  type        = string
  default     = "nixship-activate"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.-]{3,128}$", var.name))
    error_message = "name must be 3 to 128 letters, digits, '_', '.' or '-'."
  }
}

variable "default_substituters" {
  description = "Space-separated caches (s3://, https://) set as the document's default Substituters, so that an association or a command that passes none still realises from them; \"\" leaves the default empty."
  type        = string
  default     = ""

  validation {
    condition     = var.default_substituters == "" || (can(regex("^(https?|s3)://[^@?#\\s]+(\\?[^#\\s]*)?( (https?|s3)://[^@?#\\s]+(\\?[^#\\s]*)?)*$", var.default_substituters)) && !can(regex("[?&][a-z0-9_.-]*(token|secret|password|passwd|passphrase|signature|credential|auth)[a-z0-9_.-]*=", lower(var.default_substituters))))
    error_message = "Each cache must be an s3:// or http(s):// URL without credentials (no user or password before the host, no token, secret, password or signature in its query): the value is written into the document's parameters, which every instance SSM manages may read, and shown in plans; give the hosts an instance role for S3, or a netrc-file for an http(s) cache."
  }
}

variable "default_trusted_public_keys" {
  description = "Space-separated keys (name:base64) set as the document's default TrustedPublicKeys; \"\" leaves the default empty."
  type        = string
  default     = ""
}

variable "associations" {
  description = "Role -> system store path: one State Manager association per role, running the document on the instances tagged association_tag_key = ROLE with that StorePath."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for role, path in var.associations : can(regex("^[a-zA-Z0-9_.-]{1,64}$", role)) && can(regex("^/nix/store/[0-9a-df-np-sv-z]{32}-[0-9a-zA-Z+._?=-]+$", path))])
    error_message = "associations maps roles (1 to 64 letters, digits, '_', '.' or '-') to store paths /nix/store/<32-character hash>-<name>."
  }
}

variable "sender_tag_values" {
  description = "More tag values (of association_tag_key) whose instances the sender policy may send the document to, besides association_tag_values and the roles of associations."
  type        = list(string)
  default     = []
}

variable "create_association" {
  description = "Create the single association of earlier versions: the document runs on the instances tagged association_tag_key = one of association_tag_values, with store_path. Prefer associations."
  type        = bool
  default     = false
}

variable "association_tag_key" {
  description = "Tag key the associations and the sender policy select instances by."
  type        = string
  default     = "Role"
}

variable "association_tag_values" {
  description = "Tag values the single association (create_association) and the sender policy select instances by (any of them)."
  type        = list(string)
  default     = []
}

variable "store_path" {
  description = "The system (NixOS toplevel store path) the single association (create_association) activates: its StorePath."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(/nix/store/[0-9a-df-np-sv-z]{32}-[0-9a-zA-Z+._?=-]+)?$", var.store_path))
    error_message = "store_path must be empty or a store path /nix/store/<32-character hash>-<name>."
  }
}

variable "substituters" {
  description = "Space-separated caches (s3://, https://) every association passes as Substituters (e.g. the cache module's store_url); \"\" passes none, leaving the document's default."
  type        = string
  default     = ""

  validation {
    condition     = var.substituters == "" || (can(regex("^(https?|s3)://[^@?#\\s]+(\\?[^#\\s]*)?( (https?|s3)://[^@?#\\s]+(\\?[^#\\s]*)?)*$", var.substituters)) && !can(regex("[?&][a-z0-9_.-]*(token|secret|password|passwd|passphrase|signature|credential|auth)[a-z0-9_.-]*=", lower(var.substituters))))
    error_message = "Each cache must be an s3:// or http(s):// URL without credentials (no user or password before the host, no token, secret, password or signature in its query): the value is written into the document's parameters, which every instance SSM manages may read, and shown in plans; give the hosts an instance role for S3, or a netrc-file for an http(s) cache."
  }
}

variable "trusted_public_keys" {
  description = "Space-separated keys (name:base64) every association passes as TrustedPublicKeys; \"\" passes none, leaving the document's default."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags for the document."
  type        = map(string)
  default     = {}
}
