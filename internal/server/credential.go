package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// CredentialIssuer mints a netbooted node's credential (issue 7): a
// response-wrapped, single-use AppRole secret-id bound to the node's
// address. broker.NetbootIssuer implements it with Vault or OpenBao.
type CredentialIssuer interface {
	// IssueNodeCredential returns the wrapping token and the secret-id's
	// accessor. bootStarted is when the machine's current boot began (its
	// first TFTP request; zero if unknown), for the one-per-boot limit.
	IssueNodeCredential(ctx context.Context, machine string, ip netip.Addr, bootStarted time.Time) (token, accessor string, err error)
}

// RateLimited is implemented by issuer errors that refuse a second
// credential within one boot.
type RateLimited interface {
	RetryAfter() time.Duration
}

// handleCredential is POST /boot/credential, called without a token by
// bakery-credential.service on a netbooted node. The node is identified
// by its source address, which must be the address trusted for an adopted
// machine: the ip in its record, or else the address of its last DHCP
// request we answered (never one seen only in TFTP or HTTP boot traffic,
// nor ARP); the credential is bound to that address, usable once, for two
// minutes.
func (s *Server) handleCredential(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Credentials == nil {
		writeError(w, http.StatusNotFound, "this server does not issue node credentials (start bakery serve with --vault-addr)")
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip, perr := netip.ParseAddr(host)
	if err != nil || perr != nil {
		writeError(w, http.StatusBadRequest, "cannot tell the caller's address")
		return
	}
	ip = ip.Unmap()
	m, ok := s.trustedMachine(ip)
	if !ok {
		s.log.Warn("credential refused: unknown address", "ip", ip)
		writeError(w, http.StatusForbidden, "no machine is known at %s", ip)
		return
	}
	if m.Discovered {
		s.event(m.ID, "credential.refused", "machine not adopted", map[string]string{"ip": ip.String()})
		writeError(w, http.StatusForbidden, "machine %s was discovered but not adopted (PUT /api/v1/machines/%s first)", m.ID, m.ID)
		return
	}
	s.mu.Lock()
	boot := s.lastTFTP[m.ID]
	s.mu.Unlock()
	token, accessor, err := s.cfg.Credentials.IssueNodeCredential(r.Context(), m.ID, ip, boot)
	var rl RateLimited
	switch {
	case errors.As(err, &rl):
		s.event(m.ID, "credential.refused", "a credential was already issued for this boot", map[string]string{"ip": ip.String()})
		w.Header().Set("Retry-After", strconv.Itoa(int(rl.RetryAfter().Seconds())+1))
		writeError(w, http.StatusTooManyRequests, "a credential was already issued to %s for this boot", m.ID)
		return
	case err != nil:
		s.event(m.ID, "credential.failed", err.Error(), map[string]string{"ip": ip.String()})
		writeError(w, http.StatusBadGateway, "minting the credential failed: %v", err)
		return
	}
	s.event(m.ID, "credential.issued", "wrapped AppRole secret-id issued", map[string]string{"ip": ip.String(), "secret_id_accessor": accessor})
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(token + "\n"))
}
