package power

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// maxBody bounds what a device or plugin may answer.
const maxBody = 64 << 10

// ---- exec ----

// execDriver runs a plugin from the plugin directory: the request as JSON
// on stdin, the Result as JSON on stdout, stderr reported on failure.
type execDriver struct {
	path     string
	args     []string
	timeout  time.Duration
	settings map[string]any
}

var pluginName = regexpMust(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func newExec(s settings, opts Options) (*execDriver, error) {
	name, err := s.required("command")
	if err != nil {
		return nil, err
	}
	if !pluginName.MatchString(name) {
		return nil, fmt.Errorf("setting command %q: want the file name of a plugin in the plugin directory (no paths)", name)
	}
	if opts.PluginDir == "" {
		return nil, errors.New("the exec power driver needs a plugin directory (bakery serve --power-plugins)")
	}
	p := filepath.Join(opts.PluginDir, name)
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("power plugin %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("power plugin %s is not an executable file", p)
	}
	args, err := s.strings("args")
	if err != nil {
		return nil, err
	}
	timeout, err := s.duration("timeout", 30*time.Second)
	if err != nil {
		return nil, err
	}
	return &execDriver{path: p, args: args, timeout: timeout, settings: s}, nil
}

func (d *execDriver) do(ctx context.Context, action Action, m Machine) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	in, err := json.Marshal(envelope{Action: action, Machine: m, Settings: d.settings})
	if err != nil {
		return Result{State: StateUnknown}, err
	}
	cmd := exec.CommandContext(ctx, d.path, d.args...)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = maxBody, 4<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	cmd.Env = append(os.Environ(), "BAKERY_POWER_ACTION="+string(action), "BAKERY_MACHINE="+m.ID)
	err = cmd.Run()
	errText := strings.TrimSpace(stderr.String())
	if ctx.Err() == context.DeadlineExceeded {
		return Result{State: StateUnknown}, fmt.Errorf("plugin %s timed out after %s (stderr: %q)", filepath.Base(d.path), d.timeout, errText)
	}
	if err != nil {
		return Result{State: StateUnknown}, fmt.Errorf("plugin %s: %v (stderr: %q)", filepath.Base(d.path), err, errText)
	}
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return Result{State: StateUnknown}, fmt.Errorf("plugin %s wrote no JSON result (%v): %q", filepath.Base(d.path), err, head(stdout.String()))
	}
	res.State = normState(res.State)
	if !res.OK {
		msg := res.Message
		if msg == "" {
			msg = errText
		}
		return res, fmt.Errorf("plugin %s reports failure: %s", filepath.Base(d.path), msg)
	}
	return res, nil
}

type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func head(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// ---- http ----

// httpDriver calls a webhook. URL, header values and body are Go
// templates over {{.Action}}, {{.Machine}} and {{.Settings}}.
type httpDriver struct {
	client   *http.Client
	method   string
	url      *template.Template
	headers  map[string]*template.Template
	body     *template.Template
	secret   string
	sigName  string
	timeout  time.Duration
	settings map[string]any
}

func tmpl(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{
		"json": func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err },
	}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("setting %s: %w", name, err)
	}
	return t, nil
}

func newHTTP(s settings, opts Options) (*httpDriver, error) {
	u, err := s.required("url")
	if err != nil {
		return nil, err
	}
	d := &httpDriver{client: opts.client(), method: http.MethodPost, sigName: "X-Bakery-Signature", settings: s}
	if m, err := s.str("method"); err != nil {
		return nil, err
	} else if m != "" {
		d.method = strings.ToUpper(m)
	}
	if d.url, err = tmpl("url", u); err != nil {
		return nil, err
	}
	// Check the URL renders to http(s) with example data.
	probe, err := render(d.url, envelope{Action: On, Machine: Machine{ID: "0"}, Settings: s})
	if err == nil {
		var pu *url.URL
		if pu, err = url.Parse(probe); err == nil && (pu.Scheme != "http" && pu.Scheme != "https" || pu.Host == "") {
			err = fmt.Errorf("setting url %q: want http:// or https:// with a host", u)
		}
	}
	if err != nil {
		return nil, err
	}
	hs, err := s.strMap("headers")
	if err != nil {
		return nil, err
	}
	d.headers = map[string]*template.Template{}
	for k, v := range hs {
		if d.headers[k], err = tmpl("headers."+k, v); err != nil {
			return nil, err
		}
	}
	if b, err := s.str("body"); err != nil {
		return nil, err
	} else if b != "" {
		if d.body, err = tmpl("body", b); err != nil {
			return nil, err
		}
	}
	if d.secret, err = s.str("secret"); err != nil {
		return nil, err
	}
	if h, err := s.str("signature_header"); err != nil {
		return nil, err
	} else if h != "" {
		d.sigName = h
	}
	if d.timeout, err = s.duration("timeout", 10*time.Second); err != nil {
		return nil, err
	}
	return d, nil
}

func render(t *template.Template, data any) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Signature is the value of the http driver's signature header:
// "sha256=" and the hex HMAC-SHA256 of the body under the secret.
func Signature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (d *httpDriver) do(ctx context.Context, action Action, m Machine) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	data := envelope{Action: action, Machine: m, Settings: d.settings}
	u, err := render(d.url, data)
	if err != nil {
		return Result{State: StateUnknown}, fmt.Errorf("url template: %w", err)
	}
	var body []byte
	if d.body != nil {
		s, err := render(d.body, data)
		if err != nil {
			return Result{State: StateUnknown}, fmt.Errorf("body template: %w", err)
		}
		body = []byte(s)
	} else if d.method != http.MethodGet {
		// Secrets stay out of the default body.
		body, _ = json.Marshal(envelope{Action: action, Machine: m, Settings: Redact(d.settings)})
	}
	req, err := http.NewRequestWithContext(ctx, d.method, u, bytes.NewReader(body))
	if err != nil {
		return Result{State: StateUnknown}, err
	}
	if d.body == nil && body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, t := range d.headers {
		v, err := render(t, data)
		if err != nil {
			return Result{State: StateUnknown}, fmt.Errorf("header %s template: %w", k, err)
		}
		req.Header.Set(k, v)
	}
	req.Header.Set("X-Bakery-Action", string(action))
	if d.secret != "" {
		req.Header.Set(d.sigName, Signature(d.secret, body))
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return Result{State: StateUnknown}, fmt.Errorf("%s %s: %w", d.method, redactURL(req.URL), err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Result{State: StateUnknown}, fmt.Errorf("%s %s: %s: %q", d.method, redactURL(req.URL), resp.Status, head(string(raw)))
	}
	res := Result{OK: true, State: stateFor(action)}
	var answer struct {
		OK      *bool  `json:"ok"`
		State   string `json:"state"`
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &answer) == nil {
		if answer.State != "" {
			res.State = normState(answer.State)
		}
		res.Message = answer.Message
		if answer.OK != nil && !*answer.OK {
			res.OK = false
			return res, fmt.Errorf("webhook reports failure: %s", answer.Message)
		}
	}
	return res, nil
}

func redactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	q := c.Query()
	for k := range q {
		if IsSecret(k) {
			q.Set(k, RedactedValue)
		}
	}
	c.RawQuery = q.Encode()
	return c.String()
}

// baseURL turns a host setting ("10.0.0.5", "plug.lan:8080" or a URL) into
// an http base URL.
func baseURL(s settings) (string, error) {
	host, err := s.required("host")
	if err != nil {
		return "", err
	}
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	u, err := url.Parse(host)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" {
		return "", fmt.Errorf("setting host %q: want a host name or address (optionally with a port)", host)
	}
	return u.Scheme + "://" + u.Host, nil
}

// ---- tasmota ----

// tasmotaDriver switches a Tasmota device through its HTTP command API.
type tasmotaDriver struct {
	client         *http.Client
	base           string
	relay          int
	user, password string
	timeout        time.Duration
}

func newTasmota(s settings, opts Options) (*tasmotaDriver, error) {
	base, err := baseURL(s)
	if err != nil {
		return nil, err
	}
	d := &tasmotaDriver{client: opts.client(), base: base}
	if d.relay, err = s.integer("relay", 0); err != nil {
		return nil, err
	}
	if d.user, err = s.str("user"); err != nil {
		return nil, err
	}
	if d.password, err = s.str("password"); err != nil {
		return nil, err
	}
	if d.timeout, err = s.duration("timeout", 10*time.Second); err != nil {
		return nil, err
	}
	return d, nil
}

// query escapes like Tasmota's examples: spaces as %20.
func query(v string) string { return strings.ReplaceAll(url.QueryEscape(v), "+", "%20") }

func (d *tasmotaDriver) do(ctx context.Context, action Action, m Machine) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	power := "Power"
	if d.relay > 0 {
		power += fmt.Sprint(d.relay)
	}
	cmd := power
	switch action {
	case On:
		cmd += " On"
	case Off:
		cmd += " Off"
	}
	q := ""
	if d.user != "" || d.password != "" {
		q = "user=" + query(d.user) + "&password=" + query(d.password) + "&"
	}
	q += "cmnd=" + query(cmd)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/cm?"+q, nil)
	if err != nil {
		return Result{State: StateUnknown}, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return Result{State: StateUnknown}, fmt.Errorf("tasmota %s: %w", d.base, netErr(err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusOK {
		return Result{State: StateUnknown}, fmt.Errorf("tasmota %s: %s: %q", d.base, resp.Status, head(string(raw)))
	}
	var answer map[string]any
	if err := json.Unmarshal(raw, &answer); err != nil {
		return Result{State: StateUnknown}, fmt.Errorf("tasmota %s: answer is not JSON: %q", d.base, head(string(raw)))
	}
	keys := []string{strings.ToUpper(power)}
	if d.relay <= 1 {
		keys = append(keys, "POWER", "POWER1")
	}
	for _, k := range keys {
		if v, ok := answer[k].(string); ok {
			st := normState(v)
			if (action == On || action == Off) && st != stateFor(action) {
				return Result{State: st}, fmt.Errorf("tasmota %s: asked %s, device reports %s", d.base, action, v)
			}
			return Result{OK: true, State: st, Message: k + "=" + v}, nil
		}
	}
	if w, ok := answer["WARNING"].(string); ok {
		return Result{State: StateUnknown}, fmt.Errorf("tasmota %s: %s", d.base, w)
	}
	return Result{State: StateUnknown}, fmt.Errorf("tasmota %s: no %s in the answer %q", d.base, keys[0], head(string(raw)))
}

// netErr drops the request URL (which may hold a password) from an HTTP
// client error.
func netErr(err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}

// ---- shelly ----

// shellyDriver switches a Shelly Gen2+ device through its RPC API, with
// HTTP digest authentication when the device has a password.
type shellyDriver struct {
	client   *http.Client
	base     string
	id       int
	password string
	timeout  time.Duration
}

func newShelly(s settings, opts Options) (*shellyDriver, error) {
	base, err := baseURL(s)
	if err != nil {
		return nil, err
	}
	d := &shellyDriver{client: opts.client(), base: base}
	if d.id, err = s.integer("id", 0); err != nil {
		return nil, err
	}
	if d.password, err = s.str("password"); err != nil {
		return nil, err
	}
	if d.timeout, err = s.duration("timeout", 10*time.Second); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *shellyDriver) do(ctx context.Context, action Action, m Machine) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	method := "Switch.GetStatus"
	params := map[string]any{"id": d.id}
	if action == On || action == Off {
		method = "Switch.Set"
		params["on"] = action == On
	}
	raw, err := d.rpc(ctx, method, params)
	if err != nil {
		return Result{State: StateUnknown}, err
	}
	if method == "Switch.Set" {
		var ans struct {
			WasOn *bool `json:"was_on"`
		}
		if err := json.Unmarshal(raw, &ans); err != nil || ans.WasOn == nil {
			return Result{State: StateUnknown}, fmt.Errorf("shelly %s: unexpected answer %q", d.base, head(string(raw)))
		}
		return Result{OK: true, State: stateFor(action), Message: fmt.Sprintf("was_on=%v", *ans.WasOn)}, nil
	}
	var st struct {
		Output *bool    `json:"output"`
		APower *float64 `json:"apower"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Output == nil {
		return Result{State: StateUnknown}, fmt.Errorf("shelly %s: unexpected status %q", d.base, head(string(raw)))
	}
	res := Result{OK: true, State: StateOff}
	if *st.Output {
		res.State = StateOn
	}
	if st.APower != nil {
		res.Message = fmt.Sprintf("%.1f W", *st.APower)
	}
	return res, nil
}

// rpc posts one RPC call, answering a digest challenge once.
func (d *shellyDriver) rpc(ctx context.Context, method string, params any) ([]byte, error) {
	body, _ := json.Marshal(params)
	path := "/rpc/" + method
	send := func(auth string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return d.client.Do(req)
	}
	resp, err := send("")
	if err != nil {
		return nil, fmt.Errorf("shelly %s: %w", d.base, netErr(err))
	}
	if resp.StatusCode == http.StatusUnauthorized {
		challenge := resp.Header.Get("WWW-Authenticate")
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if d.password == "" {
			return nil, fmt.Errorf("shelly %s: the device asks for a password (setting password)", d.base)
		}
		auth, err := digestAuth(challenge, "admin", d.password, http.MethodPost, path)
		if err != nil {
			return nil, fmt.Errorf("shelly %s: %w", d.base, err)
		}
		if resp, err = send(auth); err != nil {
			return nil, fmt.Errorf("shelly %s: %w", d.base, netErr(err))
		}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("shelly %s %s: %s: %q", d.base, method, resp.Status, head(string(raw)))
	}
	return raw, nil
}

// digestAuth answers an HTTP digest challenge (RFC 7616, qop=auth, MD5 or
// SHA-256 as Shelly Gen2 devices use).
func digestAuth(challenge, user, password, method, uri string) (string, error) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(challenge), " ")
	if !strings.EqualFold(scheme, "Digest") {
		return "", fmt.Errorf("unsupported authentication %q", scheme)
	}
	p := parseAuthParams(rest)
	var newHash func() hash.Hash
	algo := p["algorithm"]
	switch strings.ToUpper(algo) {
	case "", "MD5":
		newHash = md5.New
	case "SHA-256":
		newHash = sha256.New
	default:
		return "", fmt.Errorf("unsupported digest algorithm %q", algo)
	}
	h := func(s string) string { x := newHash(); io.WriteString(x, s); return hex.EncodeToString(x.Sum(nil)) }
	var c [8]byte
	rand.Read(c[:])
	cnonce, nc := hex.EncodeToString(c[:]), "00000001"
	ha1 := h(user + ":" + p["realm"] + ":" + password)
	ha2 := h(method + ":" + uri)
	var resp string
	qop := ""
	if strings.Contains(p["qop"], "auth") {
		qop = "auth"
		resp = h(ha1 + ":" + p["nonce"] + ":" + nc + ":" + cnonce + ":" + qop + ":" + ha2)
	} else {
		resp = h(ha1 + ":" + p["nonce"] + ":" + ha2)
	}
	out := fmt.Sprintf(`Digest username=%q, realm=%q, nonce=%q, uri=%q, response=%q`, user, p["realm"], p["nonce"], uri, resp)
	if algo != "" {
		out += ", algorithm=" + algo
	}
	if qop != "" {
		out += fmt.Sprintf(`, qop=%s, nc=%s, cnonce=%q`, qop, nc, cnonce)
	}
	if op, ok := p["opaque"]; ok {
		out += fmt.Sprintf(`, opaque=%q`, op)
	}
	return out, nil
}

func parseAuthParams(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.Index(rest[1:], `"`)
			if end < 0 {
				break
			}
			v, rest = rest[1:1+end], rest[2+end:]
		} else {
			v, rest, _ = strings.Cut(rest, ",")
			v = strings.TrimSpace(v)
			rest = "," + rest
		}
		out[k] = v
		rest = strings.TrimSpace(rest)
		s = strings.TrimPrefix(rest, ",")
	}
	return out
}
