package main

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// The gateway's defaults (docs/configuration.md; gateway/config/config.h).
const (
	defaultConfigPath   = "/etc/sparkgate/sparkgate.yaml" // the image's ENTRYPOINT
	defaultAdminAddress = "127.0.0.1:9901"
	defaultDrainTimeout = 30 * time.Second
)

// The admin listener's paths that a probe may use (gateway/admin/admin_server.cc).
const (
	readyPath  = "/readyz"
	healthPath = "/healthz"
)

type endpoint struct {
	host string
	port int
}

func (e endpoint) String() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// loopback is true for addresses that a kubelet probe or another pod cannot reach.
func (e endpoint) loopback() bool {
	ip := net.ParseIP(e.host)
	return ip != nil && ip.IsLoopback() || e.host == "localhost"
}

// gatewayConfig is what the checks need from a sparkgate.yaml; the gateway's own
// --check-config validates the rest.
type gatewayConfig struct {
	listeners []endpoint
	admin     endpoint
	drain     time.Duration
	// Environment variables the configuration reads (credentials.token_env,
	// auth.jwt[].secret_env), with the key that names each.
	envs map[string]string
	// Files the configuration names, as written (relative paths are relative to the
	// configuration file's directory), with the key that names each.
	files map[string]string
}

// parseEndpoint follows gateway/config/config_loader.cc parse_endpoint: host:port or
// [ipv6]:port.
func parseEndpoint(text string) (endpoint, error) {
	host, port, err := net.SplitHostPort(text)
	if err != nil {
		return endpoint{}, fmt.Errorf("'%s' is not host:port or [ipv6]:port", text)
	}
	if host == "" {
		return endpoint{}, fmt.Errorf("'%s' has no host", text)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return endpoint{}, fmt.Errorf("'%s': port must be a number from 0 to 65535", text)
	}
	return endpoint{host: host, port: n}, nil
}

var durationPattern = regexp.MustCompile(`^([0-9]+)(ms|s|m|h)?$`)

// parseDuration follows gateway/config/walker.h get_duration: an integer with ms, s, m or
// h; a bare number is milliseconds.
func parseDuration(text string) (time.Duration, error) {
	m := durationPattern.FindStringSubmatch(text)
	if m == nil {
		return 0, fmt.Errorf("'%s' is not a duration (examples: 500ms, 5s, 2m)", text)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("'%s': %v", text, err)
	}
	unit := map[string]time.Duration{"": time.Millisecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[m[2]]
	return time.Duration(n) * unit, nil
}

func asMap(v interface{}) (map[string]interface{}, bool) {
	m, ok := v.(map[string]interface{})
	return m, ok
}

func asList(v interface{}) ([]interface{}, bool) {
	l, ok := v.([]interface{})
	return l, ok
}

func asString(v interface{}) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case float64, int64, bool:
		return fmt.Sprint(t), true
	}
	return "", false
}

// parseGatewayConfig reads the parts of sparkgate.yaml the checks need. Problems are
// returned together.
func parseGatewayConfig(text string) (*gatewayConfig, []string) {
	var root interface{}
	if err := yaml.Unmarshal([]byte(text), &root); err != nil {
		return nil, []string{fmt.Sprintf("the gateway configuration is not valid YAML: %v", err)}
	}
	top, ok := asMap(root)
	if !ok {
		return nil, []string{"the gateway configuration must be a YAML mapping with listeners, clusters and routes"}
	}
	cfg := &gatewayConfig{drain: defaultDrainTimeout, envs: map[string]string{}, files: map[string]string{}}
	var problems []string
	bad := func(format string, args ...interface{}) { problems = append(problems, fmt.Sprintf(format, args...)) }

	for _, key := range []string{"listeners", "clusters", "routes"} {
		if l, ok := asList(top[key]); !ok || len(l) == 0 {
			bad("gateway configuration: %s must be a non-empty list", key)
		}
	}
	listeners, _ := asList(top["listeners"])
	for i, item := range listeners {
		l, _ := asMap(item)
		address, ok := asString(l["address"])
		if !ok {
			bad("gateway configuration: listeners[%d] needs an address", i)
			continue
		}
		e, err := parseEndpoint(address)
		if err != nil {
			bad("gateway configuration: listeners[%d].address %v", i, err)
			continue
		}
		cfg.listeners = append(cfg.listeners, e)
		if tls, ok := asMap(l["tls"]); ok {
			for _, k := range []string{"cert", "key", "client_ca"} {
				if f, ok := asString(tls[k]); ok {
					cfg.files[f] = fmt.Sprintf("listeners[%d].tls.%s", i, k)
				}
			}
		}
	}

	cfg.admin, _ = parseEndpoint(defaultAdminAddress)
	if admin, ok := asMap(top["admin"]); ok {
		if address, ok := asString(admin["address"]); ok {
			e, err := parseEndpoint(address)
			if err != nil {
				bad("gateway configuration: admin.address %v", err)
			} else {
				cfg.admin = e
			}
		}
	}
	if drain, ok := asMap(top["drain"]); ok {
		if t, ok := asString(drain["timeout"]); ok {
			d, err := parseDuration(t)
			if err != nil {
				bad("gateway configuration: drain.timeout %v", err)
			} else {
				cfg.drain = d
			}
		}
	}

	clusters, _ := asList(top["clusters"])
	for i, item := range clusters {
		c, _ := asMap(item)
		if cr, ok := asMap(c["credentials"]); ok {
			if name, ok := asString(cr["token_env"]); ok {
				cfg.envs[name] = fmt.Sprintf("clusters[%d].credentials.token_env", i)
			}
			if f, ok := asString(cr["token_file"]); ok {
				cfg.files[f] = fmt.Sprintf("clusters[%d].credentials.token_file", i)
			}
		}
		if tls, ok := asMap(c["tls"]); ok {
			for _, k := range []string{"ca", "cert", "key"} {
				if f, ok := asString(tls[k]); ok {
					cfg.files[f] = fmt.Sprintf("clusters[%d].tls.%s", i, k)
				}
			}
		}
	}
	if auth, ok := asMap(top["auth"]); ok {
		if f, ok := asString(auth["tokens_file"]); ok {
			cfg.files[f] = "auth.tokens_file"
		}
		jwts, _ := asList(auth["jwt"])
		for i, item := range jwts {
			j, _ := asMap(item)
			if name, ok := asString(j["secret_env"]); ok {
				cfg.envs[name] = fmt.Sprintf("auth.jwt[%d].secret_env", i)
			}
			for _, k := range []string{"jwks_file", "secret_file"} {
				if f, ok := asString(j[k]); ok {
					cfg.files[f] = fmt.Sprintf("auth.jwt[%d].%s", i, k)
				}
			}
			keys, _ := asList(j["keys"])
			for n, k := range keys {
				if f, ok := asString(k); ok {
					cfg.files[f] = fmt.Sprintf("auth.jwt[%d].keys[%d]", i, n)
				} else if km, ok := asMap(k); ok {
					if f, ok := asString(km["file"]); ok {
						cfg.files[f] = fmt.Sprintf("auth.jwt[%d].keys[%d].file", i, n)
					}
				}
			}
		}
	}
	return cfg, problems
}

// resolve returns the absolute path of a file the configuration names.
func resolve(configPath, file string) string {
	if path.IsAbs(file) {
		return path.Clean(file)
	}
	return path.Join(path.Dir(configPath), file)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// configPathOf returns the --config argument of a sparkgate container (the image's
// ENTRYPOINT passes /etc/sparkgate/sparkgate.yaml; a later --config wins in CLI11).
func configPathOf(args []string) string {
	p := defaultConfigPath
	for i, a := range args {
		switch {
		case (a == "--config" || a == "-c") && i+1 < len(args):
			p = args[i+1]
		case strings.HasPrefix(a, "--config="):
			p = strings.TrimPrefix(a, "--config=")
		}
	}
	return p
}
