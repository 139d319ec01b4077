# Outputs of the ssm-document module.

output "document_name" {
  description = "Name of the SSM document (the fleet file's \"ssm.documentName\")."
  value       = aws_ssm_document.this.name
}

output "document_arn" {
  description = "ARN of the SSM document."
  value       = aws_ssm_document.this.arn
}

output "association_ids" {
  description = "Role -> ID of its association, one per entry of associations."
  value       = { for role, association in aws_ssm_association.role : role => association.association_id }
}

output "association_id" {
  description = "ID of the single association (create_association), or null when there is none."
  value       = var.create_association ? aws_ssm_association.this[0].association_id : null
}

output "sender_policy_json" {
  description = "IAM policy document (JSON) for the deployer or CI: ssm:SendCommand of this document to the instances tagged association_tag_key = one of association_tag_values, the roles of associations or sender_tag_values, and reading the commands' results."
  value       = data.aws_iam_policy_document.sender.json
}
