# Raspberry Pi OS Lite (64-bit) for a fleet of Pi 4/5 nodes.
#
#   BAKERY_VAR_wifi_psk='...' bakery build examples/raspios.hcl --var-file site.hcl
#
# The URL and checksum are the 2026-09-15 Trixie release; when bumping, take
# both from https://downloads.raspberrypi.com/raspios_lite_arm64/images/
# (the .sha256 next to the image) and change them together.

variable "raspios_url" {
  type    = string
  default = "https://downloads.raspberrypi.com/raspios_lite_arm64/images/raspios_lite_arm64-2026-09-15/2026-09-15-raspios-trixie-arm64-lite.img.xz"
}

variable "raspios_checksum" {
  type    = string
  default = "sha256:cdf4f3bfac35ae947b46e4e767f935453810549779ac3290e05a6754aee627e5"
}

variable "wifi_ssid" {
  type    = string
  default = "farm"
}

variable "wifi_psk" {
  type        = string
  sensitive   = true
  default     = ""
  description = "Leave empty for wired-only nodes."
  validation {
    condition     = var.wifi_psk == "" || length(var.wifi_psk) >= 8
    error_message = "The WPA passphrase must have at least 8 characters."
  }
}

variable "admin_keys" {
  type        = list(string)
  description = "SSH keys of the admins, one authorized_keys line each."
  default     = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBCXaPwpZnwpU5R9XKILX5TrmmS3Jp9mmgCIFsKZWYOG ops@example"]
}

base {
  url      = var.raspios_url
  checksum = var.raspios_checksum
}

hostname = "dhcp"

# Giving a user disables Pi OS's first-boot "create a user" wizard.
user "admin" {
  groups              = ["sudo", "adm", "video", "gpio", "i2c", "spi"]
  ssh_authorized_keys = var.admin_keys
  sudo                = "nopasswd"
}

ssh {
  enabled                 = true
  password_authentication = false
  permit_root_login       = "no"
}

wifi {
  ssid    = var.wifi_ssid
  psk     = var.wifi_psk
  country = "IE"
}

network {
  interface "eth0" {
    dhcp4        = true
    route_metric = 100
  }
}

timezone = "Europe/Dublin"
locale   = "en_IE.UTF-8"
keyboard = {
  layout = "gb"
  model  = "pc105"
}

systemd {
  disable = ["bluetooth.service", "hciuart.service"]
  mask    = ["apt-daily.timer", "apt-daily-upgrade.timer"]
}

# Installed from the network at first boot.
packages = ["htop", "jq"]

file "/etc/sysctl.d/90-fleet.conf" {
  content = "vm.swappiness = 10\n"
}

layout {
  table     = "keep"
  root_size = "6GiB"
  partition "data" {
    size       = "8GiB"
    filesystem = "ext4"
    mount      = "/var/lib/data"
    options    = "defaults,noatime"
  }
  grow = "data"
}

golden {}

output {
  name    = "raspios-node"
  formats = ["img", "bmap", "sha256", "zst"]
}
