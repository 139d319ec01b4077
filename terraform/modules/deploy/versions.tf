# Terraform version the deploy module is written for (terraform_data is built in; no provider).
terraform {
  required_version = ">= 1.5"
}
