# Every block and attribute of the spec, valid.
variable "wifi_psk" {
  type        = string
  sensitive   = true
  description = "WPA passphrase"
}

variable "site" {
  type    = string
  default = "lab"
  validation {
    condition     = length(var.site) <= 16
    error_message = "site must be at most 16 characters."
  }
}

variable "dns" {
  type    = list(string)
  default = ["192.168.1.1", "1.1.1.1"]
}

locals {
  motd = "Welcome to ${upper(var.site)}\n"
  fqdn = "${local.name}.example.org"
  name = "node-${var.site}"
}

base {
  url      = "base.img"
  checksum = "SHA256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
}

hostname = "dhcp"

user "ops" {
  groups              = ["sudo", "adm"]
  ssh_authorized_keys = [trimspace(file("keys/ops.pub"))]
  password_hash       = "$6$rounds=5000$saltsalt$Vb8Lm7Z7XqO9HqXhPzY3oZ2xKkZb2q1bZ0cQ0Q3d9yq0Y1j1Y2y3Y4y5Y6y7Y8y9Y0yAyByCyDyEyFyGy"
  sudo                = "password"
  shell               = "/bin/zsh"
  uid                 = 1500
  gecos               = "Operations"
}

user "svc" {
  home = "/var/lib/svc"
  sudo = "none"
}

ssh {
  enabled                 = true
  password_authentication = false
  permit_root_login       = "prohibit-password"
  port                    = 2222
}

wifi {
  ssid    = "farm"
  psk     = var.wifi_psk
  country = "IE"
  hidden  = true
}

network {
  interface "eth0" {
    address      = "192.168.1.10/24"
    gateway      = "192.168.1.1"
    dns          = var.dns
    search       = ["example.org"]
    route_metric = 100
    ipv6         = false
    mtu          = 1500
  }
  interface "wlan0" {
    dhcp4 = true
  }
}

timezone = "Europe/Dublin"
locale   = "en_IE.UTF-8"
keyboard = { layout = "de", variant = "nodeadkeys", options = "ctrl:nocaps" }

file "/etc/motd" {
  content = local.motd
}

file "/etc/greeting" {
  content = templatefile("files/greeting.tftpl", { name = local.fqdn, roles = ["web", "db"] })
  mode    = "0600"
  owner   = "ops"
  group   = "1000"
}

file "/etc/hello" {
  source = "files/hello.txt"
}

file "/etc/bin.dat" {
  content_base64 = base64encode("binary\n")
}

file "/etc/site.yaml" {
  content = yamlencode({ site = var.site, dns = var.dns, n = 3 })
}

directory "/srv/data" {
  mode  = "2750"
  owner = "ops"
}

symlink "/srv/current" {
  target = "data"
}

systemd {
  enable  = ["consul", "nomad.service"]
  disable = ["bluetooth.service"]
  mask    = ["apt-daily.timer"]
}

packages = ["htop", "curl=7.88.1-10+deb12u5"]

cloud_init {
  user_data = <<-YAML
    #cloud-config
    runcmd:
      - [touch, /var/lib/ready]
  YAML
}

layout {
  table     = "gpt"
  root_size = "6GiB"
  partition "data" {
    size       = "4GiB"
    filesystem = "ext4"
    mount      = "/data"
    options    = "defaults,noatime"
  }
  partition "scratch" {
    size       = 1073741824
    filesystem = "xfs-at-boot"
    mount      = "/scratch"
    label      = "scratch1"
  }
  grow = "scratch"
}

golden {
  logs = false
}

output {
  dir     = "out"
  name    = "lab-node"
  formats = ["img", "bmap", "sha256", "zst", "qcow2"]
}
