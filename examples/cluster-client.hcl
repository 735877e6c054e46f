# A cluster client: Consul and Nomad clients plus Vault Agent and
# node_exporter. One image for N nodes; flashed cards get a per-card
# credential, netbooted ones fetch theirs from bakery serve at every boot
# (docs/cluster.md):
#
#   bakery build examples/cluster-client.hcl --var node_role_id=...
#   bakery flash output/cluster-client.img /dev/sd[b-e] --hostname node-{n} \
#     --vault-addr https://vault.home:8200 --vault-token-file broker.token --node-ip 192.168.50.21+
#
# For netbooted clients build with --var secret_id_file=/run/bakery/secret-id.

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

variable "secret_id_file" {
  type        = string
  default     = "/boot/firmware/bakery/secret-id"
  description = "Where the wrapped secret-id lands: the boot partition (flashed cards) or /run/bakery/secret-id (netboot)."
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

bundle "vault-agent" {
  version        = "1.18.2"
  vault_addr     = "https://vault.home:8200"
  role_id        = var.node_role_id
  secret_id_file = var.secret_id_file
  ca_file        = "files/cluster-ca.pem"
  nomad_pki_path = "pki_int/issue/nomad"
}

bundle "consul" {
  version    = "1.20.1"
  role       = "client"
  datacenter = "home"
  # auto_config: Vault Agent renders an intro JWT, the servers hand out the
  # gossip key, certificate and agent token for it.
  secrets    = "auto-config"
  retry_join = ["server-1.local", "server-2.local", "server-3.local"]
  ca_file    = "files/cluster-ca.pem"
}

bundle "nomad" {
  version    = "1.9.3"
  role       = "client"
  datacenter = "home"
  retry_join = ["server-1.local", "server-2.local", "server-3.local"]
  ca_file    = "files/cluster-ca.pem"
}

bundle "node_exporter" {
  version = "1.8.2"
}

output {
  name = "cluster-client"
}
