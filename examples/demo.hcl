# A golden image from the offline demo base. `make run` makes the base with
# `bakery demo-base output/demo-base.img` and then builds this spec:
#
#   bakery build examples/demo.hcl
#
# Relative paths (the base, file() and source) resolve against this file's
# directory; the output directory is relative to where bakery runs.

variable "base_image" {
  type        = string
  default     = "../output/demo-base.img"
  description = "The base image: a path, file:// or https:// URL (https needs base_checksum)."
}

variable "base_checksum" {
  type        = string
  default     = ""
  description = "sha256:HEX of the base; optional for local files."
}

variable "wifi_psk" {
  type        = string
  default     = "bakery-demo-passphrase"
  sensitive   = true
  description = "WPA passphrase. Set BAKERY_VAR_wifi_psk for a real network."
}

variable "ops_keys" {
  type        = list(string)
  default     = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBCXaPwpZnwpU5R9XKILX5TrmmS3Jp9mmgCIFsKZWYOG ops@example"]
  description = "SSH public keys allowed to log in as ops."
}

locals {
  site = "demo"
}

base {
  url      = var.base_image
  checksum = var.base_checksum != "" ? var.base_checksum : null
}

# One image for every node: each takes its name from DHCP.
hostname = "dhcp"

user "ops" {
  groups              = ["sudo", "adm", "systemd-journal"]
  ssh_authorized_keys = var.ops_keys
  sudo                = "nopasswd"
}

ssh {
  enabled                 = true
  password_authentication = false
}

wifi {
  ssid    = "bakery-demo"
  psk     = var.wifi_psk
  country = "IE"
}

network {
  interface "eth0" {
    dhcp4 = true
  }
}

timezone = "Europe/Dublin"
locale   = "en_IE.UTF-8"
keyboard = "ie"

file "/etc/motd" {
  content = templatefile("files/motd.tftpl", { site = local.site })
}

file "/etc/bakery/site.json" {
  content = jsonencode({ site = local.site, role = "demo" })
  mode    = "0640"
  group   = "adm"
}

directory "/srv/demo" {
  mode  = "0750"
  owner = "ops"
  group = "adm"
}

symlink "/srv/demo/current" {
  target = "/srv/demo/releases/1"
}

systemd {
  enable = ["ssh"]
}

cloud_init {
  user_data = yamlencode({
    runcmd = [["touch", "/var/lib/bakery-demo-first-boot"]]
  })
}

golden {}

output {
  dir     = "output"
  name    = "demo"
  formats = ["img", "bmap", "sha256"]
}
