# Inputs of the deploy module: which hosts get which system, and how nixship deploys them.

variable "store_paths" {
  description = "Host name -> system store path (as `nixship terraform vars` prints them). The keys are the hosts to deploy; a change of any path deploys again."
  type        = map(string)

  validation {
    condition     = length(var.store_paths) > 0
    error_message = "store_paths must name at least one host."
  }

  validation {
    condition = alltrue([
      for host, path in var.store_paths :
      can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]*$", host)) && can(regex("^/nix/store/[0-9a-df-np-sv-z]{32}-[0-9a-zA-Z+._?=-]+$", path))
    ])
    error_message = "store_paths must map host names (letters, digits, '_', '.', '-') to store paths /nix/store/<hash>-<name>."
  }
}

variable "cache_url" {
  description = "The fleet's cache URL (as `nixship terraform vars` prints it); a change deploys again."
  type        = string
  default     = ""
}

variable "fleet_file" {
  description = "The fleet file (nixship.json) that describes the hosts; relative paths are taken from where terraform runs."
  type        = string

  validation {
    condition     = var.fleet_file != ""
    error_message = "fleet_file must name the fleet file."
  }
}

variable "via" {
  description = "Delivery mode of the hosts: ssh, ssm or agent."
  type        = string
  default     = "ssh"

  validation {
    condition     = contains(["ssh", "ssm", "agent"], var.via)
    error_message = "via must be one of ssh, ssm, agent."
  }
}

variable "nixship" {
  description = "The command that runs nixship, inserted as written (e.g. \"nixship\" or \"node /opt/nixship/dist/cli/bin.js\")."
  type        = string
  default     = "nixship"

  validation {
    condition     = trimspace(var.nixship) != "" && !can(regex("[\n;&|`]", var.nixship))
    error_message = "nixship must be a command line without newlines, ';', '&', '|' or '`'."
  }
}

variable "key_file" {
  description = "Secret key file that signs the pushed paths (passed as --key); \"\" for none."
  type        = string
  default     = ""
}

variable "release_key_file" {
  description = "Secret key file that signs releases for agent hosts (passed as --release-key); \"\" for none."
  type        = string
  default     = ""
}

variable "wait_reachable" {
  description = "Seconds nixship deploy waits for hosts not reachable yet (ssh: sshd; ssm: the instance's registration; agent: its first report), as new instances are; 0 asks once."
  type        = number
  default     = 600

  validation {
    condition     = var.wait_reachable >= 0 && var.wait_reachable <= 86400 && floor(var.wait_reachable) == var.wait_reachable
    error_message = "wait_reachable must be whole seconds, from 0 to 86400."
  }
}

variable "extra_args" {
  description = "More arguments for `nixship deploy`, each passed as one word (e.g. [\"--parallel\", \"5\"])."
  type        = list(string)
  default     = []
}
