package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/bakeryhq/bakery/internal/power"
	"github.com/bakeryhq/bakery/internal/store"
)

// PowerRequest is the body of POST /machines/{id}/power.
type PowerRequest struct {
	Action string `json:"action"`
}

// PowerAnswer is the result of a power action.
type PowerAnswer struct {
	Machine string `json:"machine"`
	Action  string `json:"action"`
	Driver  string `json:"driver"`
	power.Result
	Error string `json:"error,omitempty"`
}

// powerTimeout bounds one API power action (a cycle includes its pause).
const powerTimeout = 2 * time.Minute

// maxWatchdogCycles bounds how often the watchdog power-cycles a machine
// whose boot stalls before giving up (and saying so in an event).
const maxWatchdogCycles = 3

func powerMachine(m store.Machine) power.Machine {
	return power.Machine{ID: m.ID, Name: m.Name, MAC: m.MAC, IP: m.IP, Serial: m.Serial, Labels: m.Labels}
}

func (s *Server) handlePower(w http.ResponseWriter, r *http.Request) {
	m, ok := s.machineFromPath(w, r)
	if !ok {
		return
	}
	var req PowerRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: want {\"action\": \"on|off|cycle|status\"}: %v", err)
		return
	}
	action, err := power.ParseAction(req.Action)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if m.Power == nil || m.Power.Driver == "" {
		writeError(w, http.StatusConflict, "machine %s has no power driver; set \"power\": {\"driver\": ..., \"settings\": {...}} with PUT /api/v1/machines/%s", m.ID, m.ID)
		return
	}
	tok, _ := tokenFrom(r.Context())
	ctx, cancel := context.WithTimeout(r.Context(), powerTimeout)
	defer cancel()
	res, err := s.doPower(ctx, m, action, "token "+tok.ID, false)
	ans := PowerAnswer{Machine: m.ID, Action: string(action), Driver: m.Power.Driver, Result: res}
	if err != nil {
		ans.Error = err.Error()
		writeJSON(w, http.StatusBadGateway, ans)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// doPower runs an action and records it (and its result) as an event. A
// successful on or cycle arms the boot watchdog.
func (s *Server) doPower(ctx context.Context, m store.Machine, action power.Action, by string, fromWatchdog bool) (power.Result, error) {
	cfg := power.Config{Driver: m.Power.Driver, Settings: m.Power.Settings}
	start := time.Now()
	res, err := power.Run(ctx, cfg, s.powerOpts, action, powerMachine(m))
	took := time.Since(start).Round(time.Millisecond)
	fields := map[string]string{"driver": cfg.Driver, "action": string(action), "by": by, "state": res.State, "ms": itoa(took.Milliseconds())}
	result := "ok"
	msg := fmt.Sprintf("power %s (%s, by %s): %s", action, cfg.Driver, by, res.State)
	if res.Message != "" {
		msg += " - " + res.Message
	}
	if err != nil {
		result = "failed"
		fields["error"] = err.Error()
		msg = fmt.Sprintf("power %s (%s, by %s) failed: %v", action, cfg.Driver, by, err)
	}
	fields["result"] = result
	s.metrics.powerActions.WithLabelValues(cfg.Driver, string(action), result).Inc()
	s.event(m.ID, "power."+string(action), msg, fields)
	if err == nil && (action == power.On || action == power.Cycle) {
		s.armWatchdog(m, fromWatchdog)
	}
	return res, err
}

// watchdog waits for a powered-on machine's first TFTP request.
type watchdog struct {
	since    time.Time
	attempts int
	timer    *time.Timer
}

// armWatchdog starts waiting for the machine's TFTP request, if the
// watchdog is on and the machine is meant to netboot now.
func (s *Server) armWatchdog(m store.Machine, keepAttempts bool) {
	if s.cfg.PowerWatchdog <= 0 {
		return
	}
	if _, why := s.bootable(m); why != "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watch == nil {
		return // shutting down
	}
	w := s.watch[m.ID]
	if w == nil {
		w = &watchdog{}
		s.watch[m.ID] = w
	} else if w.timer != nil {
		w.timer.Stop()
	}
	if !keepAttempts {
		w.attempts = 0
	}
	since := time.Now()
	w.since = since
	w.timer = time.AfterFunc(s.cfg.PowerWatchdog, func() { s.watchdogFire(m.ID, since) })
}

func (s *Server) watchdogFire(id string, since time.Time) {
	s.mu.Lock()
	w := s.watch[id]
	if w == nil || !w.since.Equal(since) {
		s.mu.Unlock()
		return
	}
	if s.lastTFTP[id].After(since) {
		delete(s.watch, id)
		s.mu.Unlock()
		return
	}
	w.attempts++
	attempt := w.attempts
	if attempt > maxWatchdogCycles {
		delete(s.watch, id)
	}
	s.mu.Unlock()
	if attempt > maxWatchdogCycles {
		s.event(id, "power.watchdog", fmt.Sprintf("still no TFTP request after %d power cycles; the watchdog gives up", maxWatchdogCycles), nil)
		return
	}
	m, err := s.store.Machine(id)
	if err != nil || m.Power == nil {
		return
	}
	s.event(id, "power.watchdog", fmt.Sprintf("no TFTP request within %s of power on: power cycling (attempt %d of %d)",
		s.cfg.PowerWatchdog, attempt, maxWatchdogCycles), map[string]string{"attempt": itoa(int64(attempt))})
	ctx, cancel := context.WithTimeout(context.Background(), powerTimeout)
	defer cancel()
	s.doPower(ctx, m, power.Cycle, "watchdog", true)
}

// noteTFTP records a machine's TFTP request: its boot did not stall.
func (s *Server) noteTFTP(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastTFTP == nil {
		return
	}
	s.lastTFTP[id] = time.Now()
	if w := s.watch[id]; w != nil {
		if w.timer != nil {
			w.timer.Stop()
		}
		delete(s.watch, id)
	}
}

func (s *Server) stopWatchdogs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.watch {
		if w.timer != nil {
			w.timer.Stop()
		}
	}
	s.watch = nil
}
