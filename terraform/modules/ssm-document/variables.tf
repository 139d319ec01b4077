# Inputs of the ssm-document module: the document's name, and the optional association that
# keeps instances with a tag on a system.

variable "name" {
  description = "Name of the SSM document (the fleet file's \"ssm.documentName\")."
  type        = string
  default     = "nixship-activate"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.-]{3,128}$", var.name))
    error_message = "name must be 3 to 128 letters, digits, '_', '.' or '-'."
  }
}

variable "create_association" {
  description = "Create a State Manager association that runs the document on the instances tagged association_tag_key = one of association_tag_values, with store_path."
  type        = bool
  default     = false
}

variable "association_tag_key" {
  description = "Tag key the association and the sender policy select instances by."
  type        = string
  default     = "Role"
}

variable "association_tag_values" {
  description = "Tag values the association and the sender policy select instances by (any of them)."
  type        = list(string)
  default     = []
}

variable "store_path" {
  description = "The system (NixOS toplevel store path) the association activates: the document's StorePath."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^(/nix/store/[0-9a-df-np-sv-z]{32}-[0-9a-zA-Z+._?=-]+)?$", var.store_path))
    error_message = "store_path must be empty or a store path /nix/store/<32-character hash>-<name>."
  }
}

variable "substituters" {
  description = "Space-separated caches (s3://, https://) the hosts realise store_path from: the document's Substituters (e.g. the cache module's store_url)."
  type        = string
  default     = ""
}

variable "trusted_public_keys" {
  description = "Space-separated keys (name:base64) whose signatures the hosts accept: the document's TrustedPublicKeys."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags for the document."
  type        = map(string)
  default     = {}
}
