package step

import (
	"context"
	"fmt"
	iofs "io/fs"
	"net/netip"
	"strconv"
	"strings"

	"github.com/bakeryhq/bakery/internal/spec"
)

// Network writes each interface's addressing for the network stack the
// base uses: a NetworkManager keyfile, a systemd-networkd .network file
// (with systemd-resolved for DNS), a dhcpcd.conf block or an ifupdown
// stanza. A wireless interface ("wl...") is configured together with the
// wifi block by the wifi step. On cloud-init bases, cloud-init's own
// network configuration is turned off so the two do not fight.
func Network(_ context.Context, c *Context) error {
	n := c.Spec.Network
	stack := c.Flavour.Network
	if stack == "" {
		return n.Errorf("", "the base image has no network stack bakery knows (NetworkManager, systemd-networkd, dhcpcd or ifupdown)")
	}
	if err := disableCloudInitNetwork(c); err != nil {
		return err
	}
	for i := range n.Interfaces {
		ifc := &n.Interfaces[i]
		if isWireless(ifc.Name) && c.Spec.Wifi != nil {
			continue // written with the wifi profile
		}
		var err error
		switch stack {
		case StackNetworkManager:
			err = writeNMProfile(c, nmEthernet(c, ifc))
		case StackNetworkd:
			err = writeNetworkd(c, ifc)
		case StackDhcpcd:
			err = writeDhcpcd(c, ifc)
		case StackIfupdown:
			err = writeIfupdown(c, ifc, "")
		}
		if err != nil {
			return err
		}
	}
	if stack == StackNetworkd {
		return networkdServices(c)
	}
	return nil
}

func isWireless(name string) bool { return strings.HasPrefix(name, "wl") }

// wirelessInterface is the spec's wireless interface block, if any.
func wirelessInterface(s *spec.Spec) *spec.Interface {
	if s.Network == nil {
		return nil
	}
	for i := range s.Network.Interfaces {
		if isWireless(s.Network.Interfaces[i].Name) {
			return &s.Network.Interfaces[i]
		}
	}
	return nil
}

// disableCloudInitNetwork turns off cloud-init's network rendering (which
// would otherwise write its own fallback DHCP config at first boot) and
// removes configs it rendered into the base earlier.
func disableCloudInitNetwork(c *Context) error {
	if !c.Flavour.CloudInit {
		return nil
	}
	if err := c.WriteFile(c.Root, "/etc/cloud/cloud.cfg.d/99-bakery-network.cfg",
		"# Written by bakery build: the spec's network block configures the network.\nnetwork: {config: disabled}\n", 0o644, 0, 0); err != nil {
		return err
	}
	for _, p := range []string{"/etc/netplan/50-cloud-init.yaml", "/etc/network/interfaces.d/50-cloud-init", "/etc/network/interfaces.d/50-cloud-init.cfg",
		"/etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection"} {
		if Exists(c.Root, p) {
			if err := c.Root.Remove(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// splitDNS separates IPv4 and IPv6 name servers.
func splitDNS(dns []string) (v4, v6 []string) {
	for _, d := range dns {
		if a, err := netip.ParseAddr(d); err == nil && a.Is6() && !a.Is4In6() {
			v6 = append(v6, d)
		} else {
			v4 = append(v4, d)
		}
	}
	return
}

// nmProfile is a NetworkManager keyfile as ordered sections.
type nmProfile struct {
	file     string
	sections [][2]string // name, body
}

func (p nmProfile) String() string {
	var b strings.Builder
	b.WriteString("# Written by bakery build.\n")
	for i, s := range p.sections {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "[%s]\n%s", s[0], s[1])
	}
	return b.String()
}

func writeNMProfile(c *Context, p nmProfile) error {
	// NetworkManager ignores keyfiles that are not root-owned 0600.
	return c.WriteFile(c.Root, "/etc/NetworkManager/system-connections/"+p.file, p.String(), 0o600, 0, 0)
}

func nmEthernet(c *Context, ifc *spec.Interface) nmProfile {
	id := "bakery-" + ifc.Name
	conn := fmt.Sprintf("id=%s\nuuid=%s\ntype=ethernet\ninterface-name=%s\nautoconnect=true\n", id, c.IDs.UUIDString("nm connection "+ifc.Name), ifc.Name)
	p := nmProfile{file: id + ".nmconnection", sections: [][2]string{{"connection", conn}}}
	eth := ""
	if ifc.MTU != nil {
		eth = fmt.Sprintf("mtu=%d\n", *ifc.MTU)
	}
	p.sections = append(p.sections, [2]string{"ethernet", eth})
	p.sections = append(p.sections, nmIP(ifc)...)
	return p
}

// nmIP renders the [ipv4] and [ipv6] sections for an interface block.
func nmIP(ifc *spec.Interface) [][2]string {
	dns4, dns6 := splitDNS(ifc.DNS)
	search := ""
	if len(ifc.Search) > 0 {
		search = "dns-search=" + strings.Join(ifc.Search, ";") + ";\n"
	}
	metric := ""
	if ifc.RouteMetric != nil {
		metric = "route-metric=" + strconv.Itoa(*ifc.RouteMetric) + "\n"
	}
	static4 := ifc.Prefix.IsValid() && ifc.Prefix.Addr().Is4()
	static6 := ifc.Prefix.IsValid() && !ifc.Prefix.Addr().Is4()

	var v4 strings.Builder
	switch {
	case static4:
		v4.WriteString("method=manual\naddress1=" + ifc.Prefix.String() + "\n")
	case ifc.DHCP4:
		v4.WriteString("method=auto\n")
	default:
		v4.WriteString("method=disabled\n")
	}
	if ifc.GatewayAddr.IsValid() && ifc.GatewayAddr.Is4() {
		v4.WriteString("gateway=" + ifc.Gateway + "\n")
	}
	if len(dns4) > 0 {
		v4.WriteString("dns=" + strings.Join(dns4, ";") + ";\n")
		if ifc.DHCP4 && !static4 {
			// The spec's servers, not the DHCP server's.
			v4.WriteString("ignore-auto-dns=true\n")
		}
	}
	if !static6 || len(dns6) == 0 {
		v4.WriteString(search)
	}
	v4.WriteString(metric)

	var v6 strings.Builder
	switch {
	case static6:
		v6.WriteString("method=manual\naddress1=" + ifc.Prefix.String() + "\n")
	case ifc.IPv6:
		v6.WriteString("method=auto\n")
	default:
		v6.WriteString("method=disabled\n")
	}
	if ifc.GatewayAddr.IsValid() && !ifc.GatewayAddr.Is4() {
		v6.WriteString("gateway=" + ifc.Gateway + "\n")
	}
	// IPv6 name servers are useless (and refused by NetworkManager) on an
	// interface without IPv6.
	if len(dns6) > 0 && (ifc.IPv6 || static6) {
		v6.WriteString("dns=" + strings.Join(dns6, ";") + ";\n")
		if static6 {
			v6.WriteString(search)
		}
	}
	if ifc.IPv6 || static6 {
		v6.WriteString(metric)
	}
	return [][2]string{{"ipv4", v4.String()}, {"ipv6", v6.String()}}
}

// networkdFile renders a .network file for an interface.
func networkdFile(ifc *spec.Interface) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by bakery build.\n[Match]\nName=%s\n\n[Network]\n", ifc.Name)
	dhcp := "no"
	switch {
	case ifc.DHCP4 && ifc.IPv6:
		dhcp = "yes"
	case ifc.DHCP4:
		dhcp = "ipv4"
	case ifc.IPv6:
		dhcp = "ipv6"
	}
	fmt.Fprintf(&b, "DHCP=%s\n", dhcp)
	if ifc.IPv6 {
		b.WriteString("IPv6AcceptRA=yes\n")
	} else {
		b.WriteString("LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
	}
	if ifc.Prefix.IsValid() {
		fmt.Fprintf(&b, "Address=%s\n", ifc.Prefix)
	}
	for _, d := range ifc.DNS {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	if len(ifc.Search) > 0 {
		fmt.Fprintf(&b, "Domains=%s\n", strings.Join(ifc.Search, " "))
	}
	if ifc.GatewayAddr.IsValid() {
		fmt.Fprintf(&b, "\n[Route]\nGateway=%s\n", ifc.Gateway)
		if ifc.RouteMetric != nil {
			fmt.Fprintf(&b, "Metric=%d\n", *ifc.RouteMetric)
		}
	}
	if ifc.RouteMetric != nil {
		if ifc.DHCP4 {
			fmt.Fprintf(&b, "\n[DHCPv4]\nRouteMetric=%d\n", *ifc.RouteMetric)
		}
		if ifc.IPv6 {
			fmt.Fprintf(&b, "\n[IPv6AcceptRA]\nRouteMetric=%d\n", *ifc.RouteMetric)
		}
	}
	if len(ifc.DNS) > 0 && ifc.DHCP4 {
		b.WriteString("\n[DHCPv4]\nUseDNS=no\n")
	}
	if ifc.MTU != nil {
		fmt.Fprintf(&b, "\n[Link]\nMTUBytes=%d\n", *ifc.MTU)
	}
	return mergeSections(b.String())
}

// mergeSections joins repeated sections ([DHCPv4] twice) into one, in
// first-seen order, so the file reads as a person would write it.
func mergeSections(s string) string {
	head, rest, _ := strings.Cut(s, "[")
	rest = "[" + rest
	var order []string
	body := map[string][]string{}
	cur := ""
	for _, l := range strings.Split(rest, "\n") {
		if strings.HasPrefix(l, "[") {
			cur = l
			if _, ok := body[cur]; !ok {
				order = append(order, cur)
				body[cur] = nil
			}
			continue
		}
		if l != "" {
			body[cur] = append(body[cur], l)
		}
	}
	var b strings.Builder
	b.WriteString(head)
	for i, sec := range order {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(sec + "\n")
		for _, l := range body[sec] {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func writeNetworkd(c *Context, ifc *spec.Interface) error {
	return c.WriteFile(c.Root, "/etc/systemd/network/10-bakery-"+ifc.Name+".network", networkdFile(ifc), 0o644, 0, 0)
}

// networkdServices makes sure networkd runs and, when name servers are
// given, that systemd-resolved uses them (or, without resolved, writes
// them into a static /etc/resolv.conf).
func networkdServices(c *Context) error {
	if err := c.EnableUnit("systemd-networkd.service"); err != nil {
		return fmt.Errorf("enable systemd-networkd: %w", err)
	}
	var dns []string
	for _, ifc := range c.Spec.Network.Interfaces {
		dns = append(dns, ifc.DNS...)
	}
	if c.Flavour.Resolved {
		if err := c.EnableUnit("systemd-resolved.service"); err != nil {
			return err
		}
		fi, err := c.Root.Lstat("/etc/resolv.conf")
		if err == nil && fi.Mode&iofs.ModeSymlink != 0 {
			return nil // already managed (by resolved or resolvconf)
		}
		if err == nil {
			if err := c.Root.Remove("/etc/resolv.conf"); err != nil {
				return err
			}
		}
		return c.Root.Symlink("../run/systemd/resolve/stub-resolv.conf", "/etc/resolv.conf", c.Attr(0o777, 0, 0))
	}
	if len(dns) > 0 {
		var b strings.Builder
		b.WriteString("# Written by bakery build (no systemd-resolved in the base).\n")
		for _, d := range dns {
			b.WriteString("nameserver " + d + "\n")
		}
		c.Warnf("systemd-resolved is not installed, so the name servers are written to a static /etc/resolv.conf")
		if fi, err := c.Root.Lstat("/etc/resolv.conf"); err == nil && fi.Mode.Type() != 0 {
			if err := c.Root.Remove("/etc/resolv.conf"); err != nil {
				return err
			}
		}
		return c.WriteFile(c.Root, "/etc/resolv.conf", b.String(), 0o644, 0, 0)
	}
	return nil
}

const dhcpcdMarker = "# bakery: interface "

// writeDhcpcd appends (or replaces) a block for the interface in
// /etc/dhcpcd.conf, the way raspi-config writes static addresses on Pi
// OS bullseye and older.
func writeDhcpcd(c *Context, ifc *spec.Interface) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%s\ninterface %s\n", dhcpcdMarker, ifc.Name, ifc.Name)
	if ifc.Prefix.IsValid() {
		key := "ip_address"
		if !ifc.Prefix.Addr().Is4() {
			key = "ip6_address"
		}
		fmt.Fprintf(&b, "static %s=%s\n", key, ifc.Prefix)
	}
	if ifc.GatewayAddr.IsValid() {
		fmt.Fprintf(&b, "static routers=%s\n", ifc.Gateway)
	}
	if len(ifc.DNS) > 0 {
		fmt.Fprintf(&b, "static domain_name_servers=%s\n", strings.Join(ifc.DNS, " "))
	}
	if len(ifc.Search) > 0 {
		fmt.Fprintf(&b, "static domain_search=%s\n", strings.Join(ifc.Search, " "))
	}
	if ifc.RouteMetric != nil {
		fmt.Fprintf(&b, "metric %d\n", *ifc.RouteMetric)
	}
	if ifc.MTU != nil {
		fmt.Fprintf(&b, "static interface_mtu=%d\n", *ifc.MTU)
	}
	if !ifc.IPv6 {
		b.WriteString("noipv6rs\nnoipv6\n")
	}
	if !ifc.DHCP4 && ifc.Prefix.IsValid() && ifc.Prefix.Addr().Is4() {
		// A static address: dhcpcd must not also ask for one.
		b.WriteString("nodhcp\n")
	}
	block := b.String()
	return c.EditFile(c.Root, "/etc/dhcpcd.conf", 0o644, func(old []byte, _ bool) ([]byte, error) {
		return []byte(replaceMarkedBlock(string(old), dhcpcdMarker+ifc.Name, block)), nil
	})
}

// replaceMarkedBlock replaces the block starting with the marker line (up
// to the next blank line) or appends block after a blank line.
func replaceMarkedBlock(old, marker, block string) string {
	lines := strings.Split(old, "\n")
	for i, l := range lines {
		if l != marker {
			continue
		}
		j := i
		for j < len(lines) && lines[j] != "" {
			j++
		}
		head := ""
		if i > 0 {
			head = strings.Join(lines[:i], "\n") + "\n"
		}
		return head + block + strings.Join(lines[j:], "\n")
	}
	if old != "" && !strings.HasSuffix(old, "\n") {
		old += "\n"
	}
	if old != "" {
		old += "\n"
	}
	return old + block
}

// writeIfupdown writes an ifupdown stanza into /etc/network/interfaces.d
// (which Debian's /etc/network/interfaces sources); extra goes into the
// IPv4 stanza (wpa-conf for wireless).
func writeIfupdown(c *Context, ifc *spec.Interface, extra string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by bakery build.\nallow-hotplug %s\n", ifc.Name)
	static4 := ifc.Prefix.IsValid() && ifc.Prefix.Addr().Is4()
	switch {
	case static4:
		fmt.Fprintf(&b, "iface %s inet static\n    address %s\n", ifc.Name, ifc.Prefix)
		if ifc.GatewayAddr.IsValid() && ifc.GatewayAddr.Is4() {
			fmt.Fprintf(&b, "    gateway %s\n", ifc.Gateway)
		}
	case ifc.DHCP4:
		fmt.Fprintf(&b, "iface %s inet dhcp\n", ifc.Name)
	default:
		fmt.Fprintf(&b, "iface %s inet manual\n", ifc.Name)
	}
	if len(ifc.DNS) > 0 {
		fmt.Fprintf(&b, "    dns-nameservers %s\n", strings.Join(ifc.DNS, " "))
	}
	if len(ifc.Search) > 0 {
		fmt.Fprintf(&b, "    dns-search %s\n", strings.Join(ifc.Search, " "))
	}
	if ifc.RouteMetric != nil {
		fmt.Fprintf(&b, "    metric %d\n", *ifc.RouteMetric)
	}
	if ifc.MTU != nil {
		fmt.Fprintf(&b, "    mtu %d\n", *ifc.MTU)
	}
	b.WriteString(extra)
	switch {
	case ifc.Prefix.IsValid() && !ifc.Prefix.Addr().Is4():
		fmt.Fprintf(&b, "\niface %s inet6 static\n    address %s\n", ifc.Name, ifc.Prefix)
		if ifc.GatewayAddr.IsValid() && !ifc.GatewayAddr.Is4() {
			fmt.Fprintf(&b, "    gateway %s\n", ifc.Gateway)
		}
	case ifc.IPv6:
		fmt.Fprintf(&b, "\niface %s inet6 auto\n", ifc.Name)
	default:
		// ifupdown has no "no IPv6" setting; the kernel's per-interface
		// switch does it.
		if err := c.WriteFile(c.Root, "/etc/sysctl.d/90-bakery-noipv6-"+ifc.Name+".conf",
			fmt.Sprintf("net.ipv6.conf.%s.disable_ipv6 = 1\n", ifc.Name), 0o644, 0, 0); err != nil {
			return err
		}
	}
	if main, ok, _ := ReadFile(c.Root, "/etc/network/interfaces"); ok {
		if !strings.Contains(string(main), "interfaces.d") {
			c.Warnf("/etc/network/interfaces does not source /etc/network/interfaces.d; interface %s may not be configured", ifc.Name)
		}
		for _, l := range strings.Split(string(main), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "iface" && f[1] == ifc.Name {
				c.Warnf("/etc/network/interfaces already configures %s; ifupdown may use either stanza", ifc.Name)
				break
			}
		}
	}
	return c.WriteFile(c.Root, "/etc/network/interfaces.d/50-bakery-"+ifc.Name, b.String(), 0o644, 0, 0)
}
