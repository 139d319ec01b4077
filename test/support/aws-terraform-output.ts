// What `terraform output -json` prints for examples/aws after an apply with its two hosts
// tagged Role=web: the outputs the root module declares (cache_url, region, ssm_document_name,
// hosts), each as {sensitive, type, value}. `hosts` is a `for` expression over the host
// module instances, so Terraform types it as an object with one attribute per host. Each
// host's ssh_host_public_key is the host module's output: "" here, as without
// generate_ssh_host_key (the hosts publish their own keys to the store); the key when the
// module generates it (awsTerraformOutput makes such outputs).

const HOST_TYPE = [
  "object",
  {
    instance_id: "string",
    private_ip: "string",
    public_ip: "string",
    ssh_host_public_key: "string",
    tags: ["map", "string"],
  },
] as const;

export const AWS_TERRAFORM_OUTPUT = {
  cache_url: {
    sensitive: false,
    type: "string",
    value: "s3://nixship-example-cache?region=eu-west-1",
  },
  hosts: {
    sensitive: false,
    type: ["object", { web1: HOST_TYPE, web2: HOST_TYPE }],
    value: {
      web1: {
        instance_id: "i-0a1b2c3d4e5f60718",
        private_ip: "10.42.1.11",
        public_ip: "3.250.17.21",
        ssh_host_public_key: "",
        tags: { Name: "web1", Role: "web", Env: "Production", "nixship-host": "web1" },
      },
      web2: {
        instance_id: "i-0f9e8d7c6b5a49382",
        private_ip: "10.42.1.12",
        public_ip: "",
        ssh_host_public_key: "",
        tags: { Name: "web2", Role: "Web", Env: "staging", "nixship-host": "web2" },
      },
    },
  },
  region: { sensitive: false, type: "string", value: "eu-west-1" },
  ssm_document_name: { sensitive: false, type: "string", value: "nixship-activate" },
};

/** The declared shape of examples/aws's `hosts` output (the contract between the modules and the example). */
export const HOSTS_OUTPUT_TYPE =
  "map(object({ instance_id = string, private_ip = string, public_ip = string, ssh_host_public_key = string, tags = map(string) }))";

export interface OutputHost {
  readonly instance_id: string;
  readonly private_ip: string;
  readonly public_ip: string;
  /** `ssh-ed25519 AAAA…`, or "" when the host module did not generate the key. */
  readonly ssh_host_public_key: string;
  readonly tags: Readonly<Record<string, string>>;
}

/** `terraform output -json` of examples/aws for other hosts and another store (lab tests). */
export function awsTerraformOutput(
  cacheUrl: string,
  hosts: Readonly<Record<string, OutputHost>>,
): Record<string, unknown> {
  return {
    ...AWS_TERRAFORM_OUTPUT,
    cache_url: { sensitive: false, type: "string", value: cacheUrl },
    hosts: {
      sensitive: false,
      type: ["object", Object.fromEntries(Object.keys(hosts).map((h) => [h, HOST_TYPE]))],
      value: hosts,
    },
  };
}
