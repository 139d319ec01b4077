# Deploys a fleet's systems from `terraform apply`: when a host's store path or the cache
# changes, a local-exec runs `nixship deploy` of the store paths given to the hosts named in
# store_paths (--system HOST=PATH), without touching the instances. New instances are waited for (--wait-reachable), so the apply that
# creates them also deploys them. A failed deploy fails the apply.

locals {
  hosts = sort(keys(var.store_paths))

  deploy_args = concat(
    ["deploy", "--fleet", var.fleet_file, "--on", join(",", local.hosts), "--via", var.via],
    # Each host's system is the store path given, whatever the fleet file names now: restoring
    # an earlier var file deploys the earlier systems (fetched from the cache where the
    # deployer's store lacks them), and the state holds what was deployed.
    flatten([for host in local.hosts : ["--system", "${host}=${var.store_paths[host]}"]]),
    var.key_file == "" ? [] : ["--key", var.key_file],
    var.release_key_file == "" ? [] : ["--release-key", var.release_key_file],
    var.wait_reachable == 0 ? [] : ["--wait-reachable", tostring(var.wait_reachable)],
    var.extra_args,
    ["--json"],
  )

  # Every argument goes to the shell in single quotes, each ' inside written as '\'' , so no
  # value (a file path can hold anything) is ever read as shell syntax. var.nixship is the
  # one part inserted as written: it is a command line of the user's own. exec hands the
  # exit code of nixship (1 when a host failed) to Terraform, which then fails the apply.
  deploy_command = "exec ${var.nixship} ${join(" ", [for arg in local.deploy_args : "'${replace(arg, "'", "'\\''")}'"])}"
}

resource "terraform_data" "deploy" {
  triggers_replace = {
    store_paths = var.store_paths
    cache_url   = var.cache_url
  }

  # What the module reports, known only once the deploy ran.
  input = {
    hosts       = local.hosts
    store_paths = var.store_paths
  }

  provisioner "local-exec" {
    command     = local.deploy_command
    interpreter = ["/bin/sh", "-c"]
  }
}
