# Seed 002's pipeline from a disk image to an AMI: the image file goes up as an S3 object,
# becomes an EBS snapshot through VM Import (with the vmimport service role), and the snapshot
# becomes an AMI with ENA and IMDSv2 only. Everything is keyed on the image's MD5: a new
# image uploads a new object, which replaces the snapshot and the AMI (new before old).

locals {
  image_md5   = filemd5(var.image_path)
  image_key   = "${var.key_prefix}${var.name}-${local.image_md5}.${lower(var.image_format)}"
  create_role = var.vmimport_role_name == ""
  role_name   = local.create_role ? aws_iam_role.vmimport[0].name : var.vmimport_role_name
}

data "aws_partition" "current" {}

resource "aws_s3_object" "image" {
  bucket      = var.bucket_name
  key         = local.image_key
  source      = var.image_path
  source_hash = local.image_md5
  tags        = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

# The VM Import service role: trusted by vmie.amazonaws.com, allowed to read the images of
# this bucket and to register what it imports (the permissions AWS documents for VM Import).
data "aws_iam_policy_document" "vmimport_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vmie.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "sts:Externalid"
      values   = ["vmimport"]
    }
  }
}

data "aws_iam_policy_document" "vmimport" {
  statement {
    sid       = "LocateImageBucket"
    actions   = ["s3:GetBucketLocation"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::${var.bucket_name}"]
  }

  # Listing only under the images' prefix: the bucket may be the fleet's cache, whose other
  # keys (status records, secrets bundles) are none of VM Import's business.
  statement {
    sid       = "ListImages"
    actions   = ["s3:ListBucket"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::${var.bucket_name}"]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.key_prefix}*"]
    }
  }

  statement {
    sid       = "ReadImages"
    actions   = ["s3:GetObject"]
    resources = ["arn:${data.aws_partition.current.partition}:s3:::${var.bucket_name}/${var.key_prefix}*"]
  }

  statement {
    sid       = "RegisterSnapshots"
    actions   = ["ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:RegisterImage", "ec2:Describe*"]
    resources = ["*"]
  }
}

resource "aws_iam_role" "vmimport" {
  count = local.create_role ? 1 : 0

  name_prefix        = "vmimport-"
  assume_role_policy = data.aws_iam_policy_document.vmimport_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "vmimport" {
  count = local.create_role ? 1 : 0

  name   = "vmimport"
  role   = aws_iam_role.vmimport[0].id
  policy = data.aws_iam_policy_document.vmimport.json
}

resource "aws_ebs_snapshot_import" "image" {
  role_name   = local.role_name
  description = "${var.name} (${local.image_md5})"
  tags        = merge(var.tags, { Name = var.name })

  disk_container {
    format = var.image_format

    user_bucket {
      s3_bucket = aws_s3_object.image.bucket
      s3_key    = aws_s3_object.image.key
    }
  }

  # The import reads the role's policy, which must exist first.
  depends_on = [aws_iam_role_policy.vmimport]

  lifecycle {
    create_before_destroy = true
    replace_triggered_by  = [aws_s3_object.image]
  }
}

resource "aws_ami" "image" {
  name                = "${var.name}-${local.image_md5}"
  description         = "${var.name}, imported from ${basename(var.image_path)}"
  virtualization_type = "hvm"
  root_device_name    = "/dev/xvda"
  architecture        = var.architecture
  boot_mode           = var.boot_mode
  ena_support         = true
  imds_support        = "v2.0"
  tags                = merge(var.tags, { Name = var.name })

  ebs_block_device {
    device_name           = "/dev/xvda"
    snapshot_id           = aws_ebs_snapshot_import.image.id
    volume_type           = "gp3"
    delete_on_termination = true
  }

  lifecycle {
    create_before_destroy = true
    replace_triggered_by  = [aws_ebs_snapshot_import.image]
  }
}
