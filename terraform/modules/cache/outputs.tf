# Outputs of the cache module: where the store is, and the policies to attach.

output "bucket_name" {
  description = "Name of the bucket (given, or generated from bucket_prefix)."
  value       = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = aws_s3_bucket.this.arn
}

output "store_url" {
  description = "The store's URL for nixship (fleet file \"cache.url\", agents): s3://BUCKET[/PREFIX]?region=REGION."
  value       = "s3://${aws_s3_bucket.this.bucket}${local.key_prefix == "" ? "" : "/${trim(local.key_prefix, "/")}"}?region=${aws_s3_bucket.this.region}"
}

output "host_read_policy_arn" {
  description = "ARN of the policy that reads the cache only (hosts substituting from it)."
  value       = aws_iam_policy.host_read.arn
}

output "writer_policy_arn" {
  description = "ARN of the policy for CI or the deployer: write the cache, releases and channels, read status, record push deploys, hold a gc lease, pin paths."
  value       = aws_iam_policy.writer.arn
}

output "agent_policy_arn" {
  description = "ARN of the agent's policy: read the cache, channels and releases, write only its own status (the role's nixship-host tag)."
  value       = aws_iam_policy.agent.arn
}

output "reader_policy_arn" {
  description = "ARN of the read-only policy (a plan in a pull request, stored status): read the cache, channels, releases and status, write nothing."
  value       = aws_iam_policy.reader.arn
}

output "collector_policy_arn" {
  description = "ARN of the garbage collector's policy (an operator or a scheduled job running `nixship cache gc`): read the roots and narinfos, hold the gc lock, and delete what a collection deletes: narinfos, .ls listings, NARs, deltas, release shards, hosts' secrets bundles (secrets/*), gc leases and reports (the README's table). Attach it to the collector alone."
  value       = aws_iam_policy.collector.arn
}
