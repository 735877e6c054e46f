// Package power switches machines on and off through a driver named in the
// machine's record (power { driver, settings }):
//
//   - exec: a plugin program (the seed system's protocol): JSON request on
//     stdin, JSON result on stdout;
//   - http: a generic webhook, optionally signed with HMAC-SHA256;
//   - tasmota: a Tasmota smart plug (GET /cm?cmnd=Power%20On);
//   - shelly: a Shelly Gen2+ switch (RPC Switch.Set / Switch.GetStatus).
//
// Actions are on, off, status and cycle (off, a pause, on). See
// docs/power.md for the settings of each driver and the plugin protocol.
package power

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Action is what to do.
type Action string

// Actions.
const (
	On     Action = "on"
	Off    Action = "off"
	Cycle  Action = "cycle"
	Status Action = "status"
)

// ParseAction validates an action name.
func ParseAction(s string) (Action, error) {
	switch a := Action(strings.ToLower(strings.TrimSpace(s))); a {
	case On, Off, Cycle, Status:
		return a, nil
	}
	return "", fmt.Errorf("power action %q: want on, off, cycle or status", s)
}

// States a driver reports.
const (
	StateOn      = "on"
	StateOff     = "off"
	StateUnknown = "unknown"
)

// Result is the outcome of an action.
type Result struct {
	OK      bool   `json:"ok"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

// Machine is what a driver is told about the machine it switches.
type Machine struct {
	ID     string            `json:"id"`
	Name   string            `json:"name,omitempty"`
	MAC    string            `json:"mac,omitempty"`
	IP     string            `json:"ip,omitempty"`
	Serial string            `json:"serial,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Config is a machine's power record.
type Config struct {
	Driver   string         `json:"driver"`
	Settings map[string]any `json:"settings,omitempty"`
}

// Options are the server-wide settings of power control.
type Options struct {
	// PluginDir holds the programs the exec driver may run; a plugin is
	// named by its file name, so the API cannot run arbitrary programs.
	PluginDir string
	// HTTP is the client of the http, tasmota and shelly drivers.
	HTTP *http.Client
	// CycleWait is the pause between off and on (default 3 s; a machine's
	// cycle_wait setting wins).
	CycleWait time.Duration
	// Sleep waits (tests replace it); default a timer honouring ctx.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (o Options) sleep(ctx context.Context, d time.Duration) error {
	if o.Sleep != nil {
		return o.Sleep(ctx, d)
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o Options) client() *http.Client {
	if o.HTTP != nil {
		return o.HTTP
	}
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// driver does on, off and status; cycle is built from them.
type driver interface {
	do(ctx context.Context, action Action, m Machine) (Result, error)
}

// Drivers lists the driver names.
func Drivers() []string { return []string{"exec", "http", "shelly", "tasmota"} }

func newDriver(cfg Config, opts Options) (driver, error) {
	s := settings(cfg.Settings)
	switch cfg.Driver {
	case "exec":
		return newExec(s, opts)
	case "http":
		return newHTTP(s, opts)
	case "tasmota":
		return newTasmota(s, opts)
	case "shelly":
		return newShelly(s, opts)
	case "":
		return nil, errors.New("power: no driver configured for this machine")
	}
	return nil, fmt.Errorf("power driver %q: want one of %s", cfg.Driver, strings.Join(Drivers(), ", "))
}

// Validate checks a power record without doing anything.
func Validate(cfg Config, opts Options) error {
	if _, err := newDriver(cfg, opts); err != nil {
		return err
	}
	_, err := settings(cfg.Settings).duration("cycle_wait", 0)
	return err
}

// Run performs an action. A failed action returns a Result with OK false
// and an error saying why.
func Run(ctx context.Context, cfg Config, opts Options, action Action, m Machine) (Result, error) {
	d, err := newDriver(cfg, opts)
	if err != nil {
		return Result{State: StateUnknown}, err
	}
	if action != Cycle {
		return d.do(ctx, action, m)
	}
	wait := opts.CycleWait
	if wait == 0 {
		wait = 3 * time.Second
	}
	if wait, err = settings(cfg.Settings).duration("cycle_wait", wait); err != nil {
		return Result{State: StateUnknown}, err
	}
	off, err := d.do(ctx, Off, m)
	if err != nil {
		return off, fmt.Errorf("cycle: off: %w", err)
	}
	if err := opts.sleep(ctx, wait); err != nil {
		return Result{State: off.State}, fmt.Errorf("cycle: waiting between off and on: %w", err)
	}
	on, err := d.do(ctx, On, m)
	if err != nil {
		return on, fmt.Errorf("cycle: on: %w", err)
	}
	on.Message = strings.TrimSpace("cycled (off, " + wait.String() + ", on). " + on.Message)
	return on, nil
}

// settings reads typed values from a JSON settings object.
type settings map[string]any

func (s settings) str(key string) (string, error) {
	v, ok := s[key]
	if !ok || v == nil {
		return "", nil
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return "", fmt.Errorf("setting %s: want a string, got %T", key, v)
}

func (s settings) required(key string) (string, error) {
	v, err := s.str(key)
	if err == nil && strings.TrimSpace(v) == "" {
		err = fmt.Errorf("setting %s is required", key)
	}
	return v, err
}

func (s settings) integer(key string, def int) (int, error) {
	v, ok := s[key]
	if !ok || v == nil {
		return def, nil
	}
	switch v := v.(type) {
	case float64:
		if v == float64(int(v)) && v >= 0 {
			return int(v), nil
		}
	case string:
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("setting %s: want a non-negative whole number, got %v", key, v)
}

// duration reads "10s"-style strings or a number of seconds.
func (s settings) duration(key string, def time.Duration) (time.Duration, error) {
	v, ok := s[key]
	if !ok || v == nil {
		return def, nil
	}
	switch v := v.(type) {
	case float64:
		if v >= 0 {
			return time.Duration(v * float64(time.Second)), nil
		}
	case string:
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return d, nil
		}
	}
	return 0, fmt.Errorf("setting %s: want a duration such as \"10s\" or a number of seconds, got %v", key, v)
}

func (s settings) strings(key string) ([]string, error) {
	v, ok := s[key]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("setting %s: want a list of strings", key)
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		str, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("setting %s: want a list of strings, got %T in it", key, x)
		}
		out = append(out, str)
	}
	return out, nil
}

func (s settings) strMap(key string) (map[string]string, error) {
	v, ok := s[key]
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("setting %s: want an object of strings", key)
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		str, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("setting %s.%s: want a string", key, k)
		}
		out[k] = str
	}
	return out, nil
}

// RedactedValue replaces secrets in API answers and logs. Sending it back
// in a PUT keeps the stored secret (MergeRedacted), so read-modify-write
// clients do not need the secrets.
const RedactedValue = "(redacted)"

var secretKey = regexp.MustCompile(`(?i)pass|secret|token|key|authorization|cookie|credential`)

// IsSecret reports whether a setting (or header) name holds a secret.
func IsSecret(name string) bool { return secretKey.MatchString(name) }

// Redact returns a copy of settings with secret values replaced, at any
// depth (header objects included).
func Redact(s map[string]any) map[string]any {
	if s == nil {
		return nil
	}
	out := make(map[string]any, len(s))
	for k, v := range s {
		switch {
		case IsSecret(k):
			out[k] = RedactedValue
		default:
			if m, ok := v.(map[string]any); ok {
				out[k] = Redact(m)
			} else {
				out[k] = v
			}
		}
	}
	return out
}

// MergeRedacted puts stored secrets back where an update sent
// RedactedValue.
func MergeRedacted(update, stored map[string]any) map[string]any {
	if update == nil {
		return nil
	}
	out := make(map[string]any, len(update))
	for k, v := range update {
		switch v := v.(type) {
		case string:
			if v == RedactedValue {
				if old, ok := stored[k]; ok {
					out[k] = old
					continue
				}
			}
			out[k] = v
		case map[string]any:
			old, _ := stored[k].(map[string]any)
			out[k] = MergeRedacted(v, old)
		default:
			out[k] = v
		}
	}
	return out
}

// HasRedacted reports a RedactedValue left in settings (nothing stored to
// replace it with).
func HasRedacted(s map[string]any) []string {
	var out []string
	for k, v := range s {
		switch v := v.(type) {
		case string:
			if v == RedactedValue {
				out = append(out, k)
			}
		case map[string]any:
			for _, sub := range HasRedacted(v) {
				out = append(out, k+"."+sub)
			}
		}
	}
	sort.Strings(out)
	return out
}

// envelope is the JSON the exec driver writes to the plugin (and the http
// driver's default body).
type envelope struct {
	Action   Action         `json:"action"`
	Machine  Machine        `json:"machine"`
	Settings map[string]any `json:"settings"`
}

func stateFor(action Action) string {
	switch action {
	case On:
		return StateOn
	case Off:
		return StateOff
	}
	return StateUnknown
}

func normState(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "true", "1":
		return StateOn
	case "off", "false", "0":
		return StateOff
	}
	return StateUnknown
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }
