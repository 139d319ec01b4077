# Inputs of the ami-import module: the disk image, where it is staged, and the AMI it becomes.

variable "name" {
  description = "Name of the AMI; the image's MD5 is appended, so each image gets its own AMI name."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9()./_-]{3,90}$", var.name))
    error_message = "name must be 3 to 90 letters, digits, '(', ')', '.', '/', '_' or '-'."
  }
}

variable "image_path" {
  description = "Local path of the disk image to import (e.g. the .vhd of a NixOS amazonImage build)."
  type        = string
}

variable "image_format" {
  description = "Format of the disk image: VHD or RAW."
  type        = string
  default     = "VHD"

  validation {
    condition     = contains(["VHD", "RAW"], var.image_format)
    error_message = "image_format must be VHD or RAW."
  }
}

variable "bucket_name" {
  description = "Existing S3 bucket the image is uploaded to for the import."
  type        = string
}

variable "key_prefix" {
  description = "Key prefix of the uploaded images inside bucket_name: a folder of their own, which the VM Import role may read whole."
  type        = string
  default     = "ami-import/"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-][A-Za-z0-9._/-]*/$", var.key_prefix)) && !can(regex("^(nar|delta|releases|release-shards|channels|status|secrets|gc)/", var.key_prefix))
    error_message = "key_prefix must be a folder of the images' own, ending in '/' (e.g. \"ami-import/\"): not empty (the VM Import role could read the whole bucket), and not one of the cache's folders (nar/, delta/, releases/, release-shards/, channels/, status/, secrets/, gc/)."
  }
}

variable "architecture" {
  description = "Architecture of the image: x86_64 or arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "boot_mode" {
  description = "Boot mode of the AMI: legacy-bios, uefi or uefi-preferred."
  type        = string
  default     = "legacy-bios"

  validation {
    condition     = contains(["legacy-bios", "uefi", "uefi-preferred"], var.boot_mode)
    error_message = "boot_mode must be legacy-bios, uefi or uefi-preferred."
  }
}

variable "vmimport_role_name" {
  description = "Name of an existing VM Import service role to use; \"\" creates one for this bucket."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags for the uploaded image, the snapshot, the AMI and the role."
  type        = map(string)
  default     = {}
}
