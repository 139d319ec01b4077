# Outputs of the ami-import module.

output "ami_id" {
  description = "ID of the AMI made from the image."
  value       = aws_ami.image.id
}

output "snapshot_id" {
  description = "ID of the EBS snapshot imported from the image."
  value       = aws_ebs_snapshot_import.image.id
}

output "ami_name" {
  description = "Name of the AMI: name, then the image's MD5."
  value       = aws_ami.image.name
}
