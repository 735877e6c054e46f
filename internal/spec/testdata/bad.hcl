# Many problems at once; bad.golden lists what bakery validate reports.
variable "wifi_psk" {
  type      = string
  default   = "hunter2"
  sensitive = true
}

variable "token" {
  type = string
}

base {
  url      = "https://example.org/raspios.img.xz"
  checksum = "sha256:abc"
}

hostname = "node_01"

user "bob" {
  groups              = ["sudo", "wheel"]
  sudo                = "yes"
  ssh_authorized_keys = ["not a key"]
  shel                = "/bin/bash"
}

user "bob" {}

wifi {
  ssid    = "farm"
  psk     = var.wifi_psk
  country = "XX"
}

network {
  interface "eth0" {
    address = "10.0.0.300/24"
    gateway = "10.0.0.1"
  }
}

timezone = "Mars/Olympus_Mons/Base/One"

file "/etc/motd" {
  content = "Hello ${var.site}"
  mode    = "644x"
}

file "relative/path" {
  source = "nope.txt"
}

symlink "/etc/x" {}

systemd {
  enable = ["ssh", "ssh.service"]
}

layout {
  table = "gtp"
  partition "data" {
    size       = "lots"
    filesystem = "zfs"
  }
  grow = "date"
}

golden {
  machine_id = "yes please"
}

output {
  formats = ["img", "tar"]
}
