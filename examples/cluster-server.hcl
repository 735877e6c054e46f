# A cluster server: Consul and Nomad servers plus Vault Agent, on Raspberry
# Pi OS Lite (64-bit). Flash three cards from this one image; each gets its
# own credential (see docs/cluster.md):
#
#   bakery build examples/cluster-server.hcl --var node_role_id=$(vault read -field=role_id auth/approle/role/node/role-id)
#   bakery flash output/cluster-server.img /dev/sdb /dev/sdc /dev/sdd --hostname server-{n} \
#     --vault-addr https://vault.home:8200 --vault-token-file broker.token --node-ip 192.168.50.11+
#
# Nothing secret is in this spec or the image: the gossip key, certificates
# and tokens reach each node at run time through Vault Agent.

variable "raspios_url" {
  type    = string
  default = "https://downloads.raspberrypi.com/raspios_lite_arm64/images/raspios_lite_arm64-2026-09-15/2026-09-15-raspios-trixie-arm64-lite.img.xz"
}

variable "raspios_checksum" {
  type    = string
  default = "sha256:cdf4f3bfac35ae947b46e4e767f935453810549779ac3290e05a6754aee627e5"
}

variable "node_role_id" {
  type        = string
  default     = "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69"
  description = "The AppRole role_id of role node: an identifier, not a credential."
}

variable "datacenter" {
  type    = string
  default = "home"
}

variable "ops_keys" {
  type    = list(string)
  default = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example"]
}

base {
  url      = var.raspios_url
  checksum = var.raspios_checksum
}

user "ops" {
  groups              = ["sudo"]
  ssh_authorized_keys = var.ops_keys
  sudo                = "nopasswd"
}

ssh {
  password_authentication = false
}

# Servers announce themselves for clients joining with provider=mdns.
packages = ["avahi-daemon"]

file "/etc/avahi/services/consul-server.service" {
  content = <<-EOT
    <?xml version="1.0" standalone="no"?>
    <!DOCTYPE service-group SYSTEM "avahi-service.dtd">
    <service-group>
      <name replace-wildcards="yes">consul server on %h</name>
      <service><type>_consul-server._tcp</type><port>8301</port></service>
    </service-group>
  EOT
}

bundle "vault-agent" {
  version         = "1.18.2"
  vault_addr      = "https://vault.home:8200"
  role_id         = var.node_role_id
  ca_file         = "files/cluster-ca.pem"
  consul_pki_path = "pki_int/issue/consul"
  nomad_pki_path  = "pki_int/issue/nomad"
}

bundle "consul" {
  version          = "1.20.1"
  role             = "server"
  datacenter       = var.datacenter
  bootstrap_expect = 3
  retry_join       = ["provider=mdns service=consul-server"]
  ca_file          = "files/cluster-ca.pem"
  # Also authorize clients' auto_config (their intro JWTs come from Vault).
  secrets = "auto-config"
}

bundle "nomad" {
  version          = "1.9.3"
  role             = "server"
  datacenter       = var.datacenter
  bootstrap_expect = 3
  retry_join       = ["server-1.local", "server-2.local", "server-3.local"]
  ca_file          = "files/cluster-ca.pem"
}

bundle "node_exporter" {
  version = "1.8.2"
}

bundle "prometheus" {
  version = "3.0.1"
}

output {
  name = "cluster-server"
}
