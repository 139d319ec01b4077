# The host module's outputs: what nixship fleet from-terraform and other modules need to know
# about the host.

output "name" {
  description = "The host's name (its fleet name and Name tag)."
  value       = var.name
}

output "instance_id" {
  description = "The EC2 instance ID (the target of SSM commands)."
  value       = aws_instance.host.id
}

output "private_ip" {
  description = "The instance's private IPv4 address."
  value       = aws_instance.host.private_ip
}

output "public_ip" {
  description = "The instance's public IPv4 address; \"\" when it has none."
  value       = aws_instance.host.public_ip
}

output "public_dns" {
  description = "The instance's public DNS name; \"\" when it has none."
  value       = aws_instance.host.public_dns
}

output "role_name" {
  description = "The name of the host's IAM role (tagged nixship-host = name)."
  value       = aws_iam_role.host.name
}

output "role_arn" {
  description = "The ARN of the host's IAM role."
  value       = aws_iam_role.host.arn
}

output "security_group_id" {
  description = "The host's security group, for extra rules."
  value       = aws_security_group.host.id
}

output "tags" {
  description = "The instance's tags: tags with Name = name."
  value       = aws_instance.host.tags
}

output "ssh_host_public_key" {
  description = "The host's SSH host public key (ssh-ed25519 AAAA…, OpenSSH format) when generate_ssh_host_key, for known_hosts (nixship fleet from-terraform writes it there); \"\" otherwise, when the host publishes its own key to the store."
  value       = local.ssh_host_public_key
}
