# Outputs of the github-oidc module: what the workflow's role-to-assume takes.

output "role_arn" {
  description = "ARN of the deploy role: the workflow's role-to-assume (repository variable NIXSHIP_AWS_ROLE_ARN)."
  value       = aws_iam_role.deploy.arn
}

output "role_name" {
  description = "Name of the deploy role."
  value       = aws_iam_role.deploy.name
}

output "plan_role_arn" {
  description = "ARN of the read-only role for pull requests (NIXSHIP_AWS_PLAN_ROLE_ARN), or null without create_plan_role."
  value       = var.create_plan_role ? aws_iam_role.plan[0].arn : null
}

output "oidc_provider_arn" {
  description = "ARN of the OIDC provider the roles trust (created here, or the one given)."
  value       = local.provider_arn
}

output "subjects" {
  description = "The token subjects (sub claims) that may assume the deploy role."
  value       = local.deploy_subjects
}
