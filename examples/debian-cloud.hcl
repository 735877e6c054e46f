# Debian 12 (bookworm) generic cloud image for VMs under libvirt/KVM.
#
#   bakery build examples/debian-cloud.hcl
#   virt-install --import --disk output/debian-node.qcow2 ...
#
# The base is Debian's dated qcow2 (converted to raw with qemu-img when the
# cache is filled). Debian prunes old dated snapshots: when the URL stops
# answering, take a current one from https://cloud.debian.org/images/cloud/bookworm/
# with its line in SHA512SUMS. For arm64 use the -arm64 file and its checksum.

variable "debian_url" {
  type    = string
  default = "https://cloud.debian.org/images/cloud/bookworm/20250210-2019/debian-12-genericcloud-amd64-20250210-2019.qcow2"
}

variable "debian_checksum" {
  type    = string
  default = "sha512:a58d86525d75fd8e139a2302531ce5d2ab75ef0273cfe78f9d53aada4b23efd45f8433b4806fa4570cfe981c8fae26f5e5e855cbd66ba2198862f28125fd2d45"
}

variable "admin_keys" {
  type    = list(string)
  default = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBCXaPwpZnwpU5R9XKILX5TrmmS3Jp9mmgCIFsKZWYOG ops@example"]
}

variable "address" {
  type        = string
  default     = "192.168.122.10/24"
  description = "Static address on libvirt's default network."
}

base {
  url      = var.debian_url
  checksum = var.debian_checksum
}

hostname = "dhcp"

user "admin" {
  groups              = ["sudo", "adm"]
  ssh_authorized_keys = var.admin_keys
  sudo                = "nopasswd"
}

network {
  # virtio-net on libvirt's q35 machine type.
  interface "enp1s0" {
    address = var.address
    gateway = "192.168.122.1"
    dns     = ["192.168.122.1"]
    ipv6    = false
  }
}

timezone = "UTC"
locale   = "C.UTF-8"

packages = ["qemu-guest-agent"]

systemd {
  enable = ["qemu-guest-agent"]
}

cloud_init {
  user_data = yamlencode({
    package_update = true
  })
}

layout {
  root_size = "8GiB"
}

golden {}

output {
  name    = "debian-node"
  formats = ["img", "qcow2", "sha256"]
}
