package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// runCheckConfig runs `sparkgate --check-config` on the configuration of every gateway
// container in the set, as the pod would see it: the container's ConfigMap and Secret
// volumes are written under a temporary root (files of Secrets that are not in the
// manifests get placeholders: a generated certificate and key, a tokens file with one
// random hash, a random token), absolute paths in the configuration are moved under that
// root, and the environment gets the container's variables (placeholders for those from
// Secrets that are not in the manifests).
func runCheckConfig(s *objectSet, binary string) (string, []string) {
	var p problems
	checked := 0
	for _, w := range s.workloads() {
		c, _ := gatewayContainer(w.spec)
		if c == nil {
			continue
		}
		ref := w.ref + " container sparkgate"
		volumes := map[string]corev1.Volume{}
		for _, v := range w.spec.Volumes {
			volumes[v.Name] = v
		}
		configPath, text, err := locateConfig(s, c, volumes)
		if err != nil {
			p.add(ref, "%v", err)
			continue
		}
		cfg, errs := parseGatewayConfig(text)
		if cfg == nil {
			p.addErrs(ref, errs)
			continue
		}
		out, err := checkOne(s, c, volumes, configPath, text, cfg, binary)
		if err != nil {
			p.add(ref, "%v", err)
			continue
		}
		if out != "" {
			p.add(ref, "sparkgate --check-config rejects the configuration:\n%s", out)
			continue
		}
		checked++
	}
	if checked == 0 && len(p) == 0 {
		p = append(p, "no sparkgate container found")
	}
	return fmt.Sprintf("sparkgate --check-config accepts %d gateway configuration(s)", checked), p
}

// checkOne returns the binary's complaint (empty when it accepts the configuration).
func checkOne(s *objectSet, c *corev1.Container, volumes map[string]corev1.Volume, configPath, text string,
	cfg *gatewayConfig, binary string) (string, error) {
	root, err := os.MkdirTemp("", "sparkgate-check-config-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(root)

	// Files the configuration names, by mount.
	wanted := map[string][]string{} // mount path -> relative paths
	for f := range cfg.files {
		abs := resolve(configPath, f)
		if m, rel, ok := mountOf(c, abs); ok {
			wanted[m.MountPath] = append(wanted[m.MountPath], rel)
		}
	}
	for _, m := range c.VolumeMounts {
		dir := filepath.Join(root, m.MountPath)
		v := volumes[m.Name]
		if m.SubPath != "" {
			dir = filepath.Dir(dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		var files map[string][]byte
		switch {
		case v.ConfigMap != nil:
			if cm, ok := s.configMaps[v.ConfigMap.Name]; ok {
				files = map[string][]byte{}
				for k, val := range cm.Data {
					files[k] = []byte(val)
				}
				for k, val := range cm.BinaryData {
					files[k] = val
				}
				files = project(files, v.ConfigMap.Items)
			}
		case v.Secret != nil:
			if sec, ok := s.secrets[v.Secret.SecretName]; ok {
				files = map[string][]byte{}
				for _, k := range secretKeys(sec) {
					files[k], _ = secretValue(sec, k)
				}
				files = project(files, v.Secret.Items)
			}
		}
		if files == nil {
			// Not in the manifests: placeholders for what the configuration reads there.
			files, err = placeholders(wanted[m.MountPath], cfg, configPath, m.MountPath)
			if err != nil {
				return "", err
			}
		}
		if m.SubPath != "" {
			if content, ok := files[m.SubPath]; ok {
				if err := os.WriteFile(filepath.Join(root, m.MountPath), content, 0o644); err != nil {
					return "", err
				}
			}
			continue
		}
		for rel, content := range files {
			target := filepath.Join(dir, rel)
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return "", err
			}
			if err := os.WriteFile(target, content, 0o644); err != nil {
				return "", err
			}
		}
	}

	// The configuration, with absolute file paths moved under the root.
	abs := make([]string, 0, len(cfg.files))
	for f := range cfg.files {
		if path.IsAbs(f) {
			abs = append(abs, f)
		}
	}
	sort.Slice(abs, func(i, j int) bool { return len(abs[i]) > len(abs[j]) })
	for _, f := range abs {
		re := regexp.MustCompile(`(^|[\s:'"\[{,])` + regexp.QuoteMeta(f) + `($|[\s'"\]},])`)
		text = re.ReplaceAllString(text, "${1}"+filepath.Join(root, f)+"${2}")
	}
	configFile := filepath.Join(root, configPath)
	if err := os.MkdirAll(filepath.Dir(configFile), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(configFile, []byte(text), 0o644); err != nil {
		return "", err
	}

	env := []string{"PATH=" + os.Getenv("PATH")}
	set := map[string]bool{}
	for _, e := range c.Env {
		value := e.Value
		if e.ValueFrom != nil {
			value = "placeholder-for-check-config"
			if ref := e.ValueFrom.SecretKeyRef; ref != nil {
				if sec, ok := s.secrets[ref.Name]; ok {
					v, _ := secretValue(sec, ref.Key)
					value = string(v)
				}
			}
		}
		env = append(env, e.Name+"="+value)
		set[e.Name] = true
	}
	provided, external := envSources(s, c)
	for _, from := range c.EnvFrom {
		if from.SecretRef != nil {
			if sec, ok := s.secrets[from.SecretRef.Name]; ok {
				for _, k := range secretKeys(sec) {
					v, _ := secretValue(sec, k)
					env = append(env, from.Prefix+k+"="+string(v))
					set[from.Prefix+k] = true
				}
			}
		}
	}
	for name := range cfg.envs {
		if !set[name] && (provided[name] || external) {
			env = append(env, name+"="+randomHex(24))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--config", configFile, "--check-config")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return "", fmt.Errorf("sparkgate --check-config did not finish in 30 s")
	}
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			return "", fmt.Errorf("cannot run %s: %v", binary, err)
		}
		msg := strings.TrimSpace(strings.ReplaceAll(string(out), root, ""))
		if msg == "" {
			msg = err.Error()
		}
		return msg, nil
	}
	return "", nil
}

func project(files map[string][]byte, items []corev1.KeyToPath) map[string][]byte {
	if len(items) == 0 {
		return files
	}
	out := map[string][]byte{}
	for _, it := range items {
		if v, ok := files[it.Key]; ok {
			out[it.Path] = v
		}
	}
	return out
}

// placeholders makes stand-ins for the files the configuration reads from a volume whose
// content is not in the manifests.
func placeholders(rels []string, cfg *gatewayConfig, configPath, mountPath string) (map[string][]byte, error) {
	files := map[string][]byte{}
	var certPEM, keyPEM []byte
	for _, rel := range rels {
		full := path.Join(mountPath, rel)
		what := ""
		for f, key := range cfg.files {
			if resolve(configPath, f) == full {
				what = key
			}
		}
		switch {
		case strings.HasSuffix(what, ".key") || strings.HasSuffix(what, ".cert") || strings.HasSuffix(what, ".ca") ||
			strings.HasSuffix(what, ".client_ca") || strings.HasSuffix(what, ".ca_file"):
			if certPEM == nil {
				var err error
				certPEM, keyPEM, err = selfSigned()
				if err != nil {
					return nil, err
				}
			}
			if strings.HasSuffix(what, ".key") {
				files[rel] = keyPEM
			} else {
				files[rel] = certPEM
			}
		case what == "auth.tokens_file":
			files[rel] = []byte(fmt.Sprintf("tokens:\n  - {sha256: \"sha256:%s\", user: placeholder}\n", randomHex(32)))
		case strings.HasSuffix(what, ".token_file") || strings.HasSuffix(what, ".secret_file"):
			files[rel] = []byte(randomHex(32) + "\n")
		default:
			return nil, fmt.Errorf("%s (%s) is on a volume that is not in the manifests, and this check cannot make a stand-in for it", full, what)
		}
	}
	return files, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// selfSigned returns a P-256 certificate and its key, valid for one day.
func selfSigned() ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sparkgate-check-config"},
		DNSNames:              []string{"sparkgate-check-config"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}
