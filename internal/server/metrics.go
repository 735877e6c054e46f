package server

import (
	"net/http"

	"github.com/bakeryhq/bakery/internal/netboot/nfs"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, on a registry of its own (no
// global state, so several servers can run in one test binary).
type metrics struct {
	reg           *prometheus.Registry
	dhcpRequests  *prometheus.CounterVec
	tftpTransfers *prometheus.CounterVec
	tftpBytes     prometheus.Counter
	tftpActive    prometheus.Gauge
	httpRequests  *prometheus.CounterVec
	bootBytes     prometheus.Counter
	lastSeen      *prometheus.GaugeVec
	events        *prometheus.CounterVec
	powerActions  *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		dhcpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bakery_dhcp_requests_total", Help: "DHCP DISCOVER/REQUEST packets by client kind and result (answered, ignored, failed).",
		}, []string{"kind", "result"}),
		tftpTransfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bakery_tftp_transfers_total", Help: "TFTP requests by outcome (served, probe, not_found, refused, aborted, failed).",
		}, []string{"outcome"}),
		tftpBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bakery_tftp_bytes_total", Help: "File bytes acknowledged by TFTP clients.",
		}),
		tftpActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bakery_tftp_active_transfers", Help: "TFTP transfers in progress.",
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bakery_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		bootBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bakery_http_boot_bytes_total", Help: "Kernel and initrd bytes served to iPXE clients over HTTP.",
		}),
		lastSeen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bakery_machine_last_seen_timestamp_seconds", Help: "When a machine was last seen in DHCP, TFTP or HTTP boot traffic.",
		}, []string{"machine"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bakery_events_total", Help: "Events recorded, by type.",
		}, []string{"type"}),
		powerActions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bakery_power_actions_total", Help: "Power actions by driver, action and result (ok, failed).",
		}, []string{"driver", "action", "result"}),
	}
	nfsStats := func(f func(st nfsStatsT) float64) func() float64 {
		return func() float64 {
			if s.nfs == nil {
				return 0
			}
			return f(s.nfs.Stats())
		}
	}
	cache := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(m.dhcpRequests, m.tftpTransfers, m.tftpBytes, m.tftpActive, m.httpRequests, m.bootBytes, m.lastSeen, m.events, m.powerActions,
		cache("bakery_nfs_connections", "Open NFS connections.", nfsStats(func(st nfsStatsT) float64 { return float64(st.Active) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bakery_nfs_connections_total", Help: "NFS connections accepted."},
			nfsStats(func(st nfsStatsT) float64 { return float64(st.Accepted) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bakery_nfs_connections_refused_total", Help: "NFS connections closed at once (over the connection limits)."},
			nfsStats(func(st nfsStatsT) float64 { return float64(st.Refused) })),
		cache("bakery_boot_cache_bytes", "Bytes of boot files held in the memory cache.", func() float64 { return float64(s.lib.Stats().Bytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bakery_boot_cache_hits_total", Help: "Boot file cache hits."},
			func() float64 { return float64(s.lib.Stats().Hits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bakery_boot_cache_misses_total", Help: "Boot file cache misses."},
			func() float64 { return float64(s.lib.Stats().Misses) }),
		cache("bakery_open_images", "Images opened for serving.", func() float64 { return float64(s.lib.Stats().OpenImages) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

type nfsStatsT = nfs.Stats
