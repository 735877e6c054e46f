package spec

import (
	"net/netip"
	"regexp"
)

// Network configures wired (or wireless) interfaces for the network stack
// the image uses (NetworkManager, or systemd-networkd with
// systemd-resolved):
//
//	network {
//	  interface "eth0" {
//	    address = "192.168.1.10/24"
//	    gateway = "192.168.1.1"
//	    dns     = ["192.168.1.1"]
//	  }
//	}
type Network struct {
	Block
	Interfaces []Interface `hcl:"interface,block,unique" json:"interfaces"`
}

// Interface is one interface's addressing.
type Interface struct {
	Block
	Name string `hcl:"name,label" json:"name"`
	// DHCP4 requests an IPv4 address by DHCP; default true, or false when
	// a static address is given.
	DHCP4 bool `hcl:"dhcp4" json:"dhcp4"`
	// IPv6 enables IPv6 autoconfiguration (router advertisements, DHCPv6);
	// default true. false leaves the interface without IPv6 addresses.
	IPv6 bool `hcl:"ipv6" json:"ipv6"`
	// Address is a static address in CIDR form, "192.168.1.10/24" or
	// "2001:db8::10/64".
	Address string `hcl:"address" json:"address,omitempty"`
	// Gateway is the default route's next hop.
	Gateway string `hcl:"gateway" json:"gateway,omitempty"`
	// DNS lists name server addresses.
	DNS []string `hcl:"dns" json:"dns,omitempty"`
	// Search lists DNS search domains (extension).
	Search []string `hcl:"search" json:"search,omitempty"`
	// RouteMetric is the metric of routes through this interface (nil:
	// the network stack's default).
	RouteMetric *int `hcl:"route_metric" json:"route_metric,omitempty"`
	// MTU overrides the link MTU (extension; nil: unchanged).
	MTU *int `hcl:"mtu" json:"mtu,omitempty"`

	// Prefix is Address parsed (valid when Address is set).
	Prefix netip.Prefix `json:"-"`
	// GatewayAddr is Gateway parsed (valid when Gateway is set).
	GatewayAddr netip.Addr `json:"-"`
}

var ifNameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,15}$`)

func (n *Network) check(c *checks) {
	if len(n.Interfaces) == 0 {
		c.errorf(&n.Block, "", `network needs at least one interface block, e.g. interface "eth0" { dhcp4 = true }`)
	}
}

func (i *Interface) setDefaults() { i.DHCP4, i.IPv6 = true, true }

func (i *Interface) check(c *checks) {
	b := &i.Block
	if !ifNameRE.MatchString(i.Name) || i.Name == "." || i.Name == ".." {
		c.errorf(b, "", "interface name %q is not valid (1-15 characters, no spaces or slashes)", i.Name)
	}
	if b.Known("address") {
		p, err := netip.ParsePrefix(i.Address)
		switch {
		case err != nil:
			c.errorf(b, "address", "address %q must be an IP address with a prefix length, such as \"192.168.1.10/24\"", i.Address)
		case p.Addr() == p.Masked().Addr() && p.Bits() < p.Addr().BitLen()-1:
			c.errorf(b, "address", "address %q is the network address of its subnet, not a host address", i.Address)
		default:
			i.Prefix = p
		}
		if !b.IsSet("dhcp4") {
			i.DHCP4 = false
		}
	}
	if b.Known("gateway") {
		g, err := netip.ParseAddr(i.Gateway)
		switch {
		case err != nil:
			c.errorf(b, "gateway", "gateway %q is not an IP address", i.Gateway)
		case i.Prefix.IsValid() && g.Is4() != i.Prefix.Addr().Is4():
			c.errorf(b, "gateway", "gateway %s and address %s are not the same IP version", i.Gateway, i.Address)
		case i.Prefix.IsValid() && !i.Prefix.Masked().Contains(g):
			c.warnf(b, "gateway", "gateway %s is outside %s; it is only reachable with an on-link route", i.Gateway, i.Prefix.Masked())
			i.GatewayAddr = g
		case !b.IsSet("address") && !i.DHCP4 && g.Is4():
			c.errorf(b, "gateway", "an IPv4 gateway needs a static address or dhcp4")
		default:
			i.GatewayAddr = g
		}
	}
	for n, d := range i.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			c.errorf(b, elemKey("dns", n), "dns server %q is not an IP address", d)
		}
	}
	for n, s := range i.Search {
		if !validHostname(s) {
			c.errorf(b, elemKey("search", n), "search domain %q is not a valid domain name", s)
		}
	}
	if i.RouteMetric != nil && (*i.RouteMetric < 0 || int64(*i.RouteMetric) > 4294967295) {
		c.errorf(b, "route_metric", "route_metric %d is out of range (0-4294967295)", *i.RouteMetric)
	}
	if i.MTU != nil && (*i.MTU < 576 || *i.MTU > 65535) {
		c.errorf(b, "mtu", "mtu %d is out of range (576-65535)", *i.MTU)
	}
	if !i.DHCP4 && !i.IPv6 && !b.IsSet("address") {
		c.errorf(b, "", "interface %q would have no address: set address, dhcp4 = true or ipv6 = true", i.Name)
	}
}
