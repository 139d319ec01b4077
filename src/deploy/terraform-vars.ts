// The Nix → Terraform bridge: built systems as Terraform input variables. The names and types
// are those the deploy module and examples/aws declare: store_paths (map(string), host name →
// system store path) and cache_url (string, "" when the fleet has no cache).

export interface TerraformVars {
  readonly store_paths: Readonly<Record<string, string>>;
  readonly cache_url: string;
}

/**
 * What Terraform's `external` data source accepts: an object of strings only, so the map
 * travels as JSON text (`jsondecode(data.external.NAME.result.store_paths_json)`).
 */
export interface ExternalResult {
  readonly store_paths_json: string;
  readonly cache_url: string;
}

/** `hosts` in the order the variables list them; each must have a built system. */
export function terraformVars(
  hosts: readonly string[],
  systemOf: ReadonlyMap<string, string>,
  cacheUrl: string | undefined,
): TerraformVars {
  const storePaths: Record<string, string> = {};
  for (const host of hosts) {
    const path = systemOf.get(host);
    if (path === undefined) throw new Error(`no system was built for ${host}`);
    storePaths[host] = path;
  }
  return { store_paths: storePaths, cache_url: cacheUrl ?? "" };
}

export function externalResult(vars: TerraformVars): ExternalResult {
  return { store_paths_json: JSON.stringify(vars.store_paths), cache_url: vars.cache_url };
}
