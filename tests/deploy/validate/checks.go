package main

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// workload is anything with a pod template: a Deployment, a Job or a bare Pod.
type workload struct {
	ref       string
	selector  *metav1.LabelSelector // nil for a Pod and a Job (generated)
	labels    map[string]string     // the pod's labels
	spec      *corev1.PodSpec
	replicas  *int32 // Deployments only
	isJobLike bool   // Job or Pod: restartPolicy rules differ
	set       *objectSet
}

func (s *objectSet) workloads() []workload {
	var ws []workload
	for _, d := range s.deployments {
		ws = append(ws, workload{ref: "Deployment/" + d.Name, selector: d.Spec.Selector, labels: d.Spec.Template.Labels,
			spec: &d.Spec.Template.Spec, replicas: d.Spec.Replicas})
	}
	for _, j := range s.jobs {
		ws = append(ws, workload{ref: "Job/" + j.Name, selector: j.Spec.Selector, labels: j.Spec.Template.Labels,
			spec: &j.Spec.Template.Spec, isJobLike: true})
	}
	for _, p := range s.pods {
		ws = append(ws, workload{ref: "Pod/" + p.Name, labels: p.Labels, spec: &p.Spec, isJobLike: true})
	}
	for i := range ws {
		ws[i].set = s
	}
	return ws
}

// problems collects messages, each prefixed with the object it is about.
type problems []string

func (p *problems) add(ref, format string, args ...interface{}) {
	*p = append(*p, ref+": "+fmt.Sprintf(format, args...))
}

func (p *problems) addErrs(ref string, errs []string) {
	for _, e := range errs {
		p.add(ref, "%s", e)
	}
}

func validate(s *objectSet) []string {
	var p problems
	for _, o := range s.all {
		checkMetadata(&p, o)
	}
	ws := s.workloads()
	for _, w := range ws {
		checkWorkload(&p, s, w)
	}
	for _, svc := range s.services {
		checkService(&p, svc, ws)
	}
	for _, pdb := range s.pdbs {
		ref := "PodDisruptionBudget/" + pdb.Name
		if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
			p.add(ref, "set exactly one of minAvailable and maxUnavailable")
		}
		if len(selected(pdb.Spec.Selector, ws)) == 0 {
			p.add(ref, "its selector matches no rendered workload")
		}
	}
	for _, hpa := range s.hpas {
		checkHPA(&p, s, hpa)
	}
	for _, sm := range s.serviceMonitors {
		checkServiceMonitor(&p, s, sm, ws)
	}
	return p
}

func checkMetadata(p *problems, o object) {
	name := o.meta.GetName()
	if name == "" {
		p.add(fmt.Sprintf("document %d (%s)", o.index, o.kind), "metadata.name is required")
		return
	}
	var errs []string
	if o.kind == "Service" {
		errs = validation.IsDNS1035Label(name)
	} else {
		errs = validation.IsDNS1123Subdomain(name)
	}
	for _, e := range errs {
		p.add(o.ref(), "metadata.name: %s", e)
	}
	for _, e := range metavalidation.ValidateLabels(o.meta.GetLabels(), field.NewPath("metadata", "labels")) {
		p.add(o.ref(), "%s", e.Error())
	}
}

// selected returns the workloads whose pod labels a selector matches. A nil or empty
// selector matches nothing (a PodDisruptionBudget or Service must select something).
func selected(sel *metav1.LabelSelector, ws []workload) []workload {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return nil
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil
	}
	var out []workload
	for _, w := range ws {
		if selector.Matches(labels.Set(w.labels)) {
			out = append(out, w)
		}
	}
	return out
}

func selectedBySet(set map[string]string, ws []workload) []workload {
	if len(set) == 0 {
		return nil
	}
	return selected(&metav1.LabelSelector{MatchLabels: set}, ws)
}

func findPort(c *corev1.Container, port intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if port.Type == intstr.String && cp.Name == port.StrVal || port.Type == intstr.Int && cp.ContainerPort == port.IntVal {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range spec.InitContainers {
		cs = append(cs, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		cs = append(cs, &spec.Containers[i])
	}
	return cs
}

// gatewayContainer returns the container named sparkgate, and whether it is an init
// container (a native sidecar).
func gatewayContainer(spec *corev1.PodSpec) (*corev1.Container, bool) {
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == "sparkgate" {
			return &spec.InitContainers[i], true
		}
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name == "sparkgate" {
			return &spec.Containers[i], false
		}
	}
	return nil, false
}

// checkWorkload checks a pod spec: the rules of the API server that the typed decoding
// does not cover and that we rely on, then sparkgate's container.
func checkWorkload(p *problems, s *objectSet, w workload) {
	spec := w.spec
	if w.selector != nil {
		selector, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil {
			p.add(w.ref, "spec.selector: %v", err)
		} else if !selector.Matches(labels.Set(w.labels)) {
			p.add(w.ref, "spec.selector does not match the pod template's labels")
		}
	} else if strings.HasPrefix(w.ref, "Deployment/") {
		p.add(w.ref, "spec.selector is required")
	}
	for _, e := range metavalidation.ValidateLabels(w.labels, field.NewPath("spec", "template", "metadata", "labels")) {
		p.add(w.ref, "%s", e.Error())
	}
	if w.isJobLike && strings.HasPrefix(w.ref, "Job/") && spec.RestartPolicy != corev1.RestartPolicyNever && spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		p.add(w.ref, "a Job's pod needs restartPolicy Never or OnFailure (got %q)", spec.RestartPolicy)
	}
	if len(spec.Containers) == 0 {
		p.add(w.ref, "the pod has no containers")
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		for _, e := range validation.IsDNS1123Label(v.Name) {
			p.add(w.ref, "volume %q: %s", v.Name, e)
		}
		if _, dup := volumes[v.Name]; dup {
			p.add(w.ref, "volume %q is defined twice", v.Name)
		}
		volumes[v.Name] = v
		checkVolumeKeys(p, s, w.ref, v)
	}
	names := map[string]bool{}
	for _, c := range allContainers(spec) {
		ref := w.ref + " container " + c.Name
		for _, e := range validation.IsDNS1123Label(c.Name) {
			p.add(ref, "name: %s", e)
		}
		if names[c.Name] {
			p.add(w.ref, "container name %q is used twice", c.Name)
		}
		names[c.Name] = true
		if c.Image == "" {
			p.add(ref, "image is required")
		}
		portNames := map[string]bool{}
		for _, cp := range c.Ports {
			if cp.Name != "" {
				for _, e := range validation.IsValidPortName(cp.Name) {
					p.add(ref, "port name %q: %s", cp.Name, e)
				}
				if portNames[cp.Name] {
					p.add(ref, "port name %q is used twice", cp.Name)
				}
				portNames[cp.Name] = true
			}
			for _, e := range validation.IsValidPortNum(int(cp.ContainerPort)) {
				p.add(ref, "containerPort %d: %s", cp.ContainerPort, e)
			}
		}
		mounts := map[string]bool{}
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				p.add(ref, "volumeMount %q names no volume of the pod", m.Name)
			}
			if mounts[m.MountPath] {
				p.add(ref, "two volumes are mounted at %s", m.MountPath)
			}
			mounts[m.MountPath] = true
		}
		for _, e := range c.Env {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				p.add(ref, "env %q: %s", e.Name, msg)
			}
		}
		for _, probe := range []struct {
			what  string
			probe *corev1.Probe
		}{{"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}, {"startupProbe", c.StartupProbe}} {
			if probe.probe != nil && probe.probe.HTTPGet != nil {
				if _, ok := findPort(c, probe.probe.HTTPGet.Port); !ok && probe.probe.HTTPGet.Port.Type == intstr.String {
					p.add(ref, "%s names port %q, which the container does not declare", probe.what, probe.probe.HTTPGet.Port.StrVal)
				}
			}
		}
	}
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			p.add(w.ref+" initContainer "+c.Name, "restartPolicy may only be Always (a native sidecar)")
		}
	}
	if c, sidecar := gatewayContainer(spec); c != nil {
		checkGateway(p, s, w, c, sidecar, volumes)
	}
}

// checkVolumeKeys: a volume that projects keys of a rendered ConfigMap or Secret must
// name keys that exist.
func checkVolumeKeys(p *problems, s *objectSet, ref string, v corev1.Volume) {
	switch {
	case v.ConfigMap != nil:
		if cm, ok := s.configMaps[v.ConfigMap.Name]; ok {
			for _, item := range v.ConfigMap.Items {
				_, inData := cm.Data[item.Key]
				_, inBinary := cm.BinaryData[item.Key]
				if !inData && !inBinary {
					p.add(ref, "volume %q projects key %q, which ConfigMap/%s does not have", v.Name, item.Key, cm.Name)
				}
			}
		}
	case v.Secret != nil:
		if sec, ok := s.secrets[v.Secret.SecretName]; ok {
			for _, item := range v.Secret.Items {
				if _, found := secretValue(sec, item.Key); !found {
					p.add(ref, "volume %q projects key %q, which Secret/%s does not have", v.Name, item.Key, sec.Name)
				}
			}
		}
	}
}

// gatewaySetup is what checkGateway and runCheckConfig both need: the gateway container,
// where its configuration comes from, and the parsed configuration.
type gatewaySetup struct {
	workload   workload
	container  *corev1.Container
	sidecar    bool
	configPath string
	configText string
	config     *gatewayConfig
}

// locateConfig finds the ConfigMap key mounted at the container's --config path.
func locateConfig(s *objectSet, c *corev1.Container, volumes map[string]corev1.Volume) (string, string, error) {
	configPath := configPathOf(append(append([]string{}, c.Command...), c.Args...))
	for _, m := range c.VolumeMounts {
		var key string
		switch {
		case m.SubPath != "" && m.MountPath == configPath:
			key = m.SubPath
		case m.SubPath == "" && path.Dir(configPath) == path.Clean(m.MountPath):
			key = path.Base(configPath)
		default:
			continue
		}
		v := volumes[m.Name]
		if v.ConfigMap == nil {
			return configPath, "", fmt.Errorf("the configuration %s is on volume %q, which is not a ConfigMap", configPath, m.Name)
		}
		for _, item := range v.ConfigMap.Items {
			if item.Path == key {
				key = item.Key
			}
		}
		cm, ok := s.configMaps[v.ConfigMap.Name]
		if !ok {
			return configPath, "", fmt.Errorf("the configuration %s comes from ConfigMap/%s, which is not in the manifests", configPath, v.ConfigMap.Name)
		}
		text, ok := cm.Data[key]
		if !ok {
			return configPath, "", fmt.Errorf("the configuration %s is key %q of ConfigMap/%s, which has no such key", configPath, key, cm.Name)
		}
		return configPath, text, nil
	}
	return configPath, "", fmt.Errorf("no volume is mounted at the configuration path %s (the image reads %s unless --config says otherwise)", configPath, defaultConfigPath)
}

// mountOf returns the volume mount that holds an absolute path.
func mountOf(c *corev1.Container, file string) (corev1.VolumeMount, string, bool) {
	best := -1
	rel := ""
	for i, m := range c.VolumeMounts {
		mp := path.Clean(m.MountPath)
		if m.SubPath != "" {
			if file == mp && (best < 0 || len(mp) > len(c.VolumeMounts[best].MountPath)) {
				best, rel = i, m.SubPath
			}
			continue
		}
		if strings.HasPrefix(file, mp+"/") && (best < 0 || len(mp) > len(path.Clean(c.VolumeMounts[best].MountPath))) {
			best, rel = i, strings.TrimPrefix(file, mp+"/")
		}
	}
	if best < 0 {
		return corev1.VolumeMount{}, "", false
	}
	return c.VolumeMounts[best], rel, true
}

func checkGateway(p *problems, s *objectSet, w workload, c *corev1.Container, sidecar bool, volumes map[string]corev1.Volume) {
	ref := w.ref + " container sparkgate"
	configPath, text, err := locateConfig(s, c, volumes)
	if err != nil {
		p.add(ref, "%v", err)
		return
	}
	cfg, errs := parseGatewayConfig(text)
	p.addErrs(ref, errs)
	if cfg == nil || len(cfg.listeners) == 0 {
		return
	}
	s.gateways[c] = cfg

	// Ports: every declared port is one the gateway listens on.
	served := map[int]endpoint{cfg.admin.port: cfg.admin}
	for _, l := range cfg.listeners {
		served[l.port] = l
	}
	for _, cp := range c.Ports {
		if _, ok := served[int(cp.ContainerPort)]; !ok {
			p.add(ref, "declares port %d (%s), but the gateway configuration listens on no such port (listeners and admin.address)", cp.ContainerPort, cp.Name)
		}
	}

	// Probes: httpGet on the admin listener, on paths it serves. Liveness must not use
	// /readyz: that turns 503 during a drain and the kubelet would kill the draining pod.
	checkProbe := func(what string, probe *corev1.Probe, paths ...string) {
		if probe == nil {
			return
		}
		if probe.HTTPGet == nil {
			p.add(ref, "%s must be an httpGet probe of the admin listener (%s)", what, strings.Join(paths, " or "))
			return
		}
		g := probe.HTTPGet
		if !contains(paths, g.Path) {
			why := ""
			if what == "livenessProbe" && g.Path == readyPath {
				why = ": /readyz turns 503 during a drain, and the kubelet would restart the draining gateway"
			}
			p.add(ref, "%s probes path %q; it must be %s%s", what, g.Path, strings.Join(paths, " or "), why)
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			p.add(ref, "%s uses scheme %s; the admin listener speaks plain HTTP", what, g.Scheme)
		}
		port := int(g.Port.IntVal)
		if g.Port.Type == intstr.String {
			cp, ok := findPort(c, g.Port)
			if !ok {
				return // reported by checkWorkload
			}
			port = int(cp.ContainerPort)
		}
		if port != cfg.admin.port {
			p.add(ref, "%s probes port %d, but the admin listener (admin.address) is %s", what, port, cfg.admin)
		} else if cfg.admin.loopback() {
			p.add(ref, "%s cannot reach the admin listener: admin.address %s is loopback, and the kubelet probes the pod IP (bind it to 0.0.0.0)", what, cfg.admin)
		}
	}
	checkProbe("readinessProbe", c.ReadinessProbe, readyPath)
	checkProbe("livenessProbe", c.LivenessProbe, healthPath)
	checkProbe("startupProbe", c.StartupProbe, readyPath, healthPath)
	if sidecar {
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			p.add(ref, "sparkgate as an init container must be a native sidecar (restartPolicy: Always); otherwise the pod waits for it to exit")
		}
		if c.StartupProbe == nil {
			p.add(ref, "a sidecar sparkgate needs a startupProbe, so that the other containers start only once it is ready")
		}
	} else {
		if c.ReadinessProbe == nil {
			p.add(ref, "needs a readinessProbe on %s, so that a draining replica leaves the Service", readyPath)
		}
		if c.LivenessProbe == nil {
			p.add(ref, "needs a livenessProbe on %s", healthPath)
		}
	}

	// Shutdown: the kubelet's grace period covers the preStop hook and the drain.
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if w.spec.TerminationGracePeriodSeconds != nil {
		grace = *w.spec.TerminationGracePeriodSeconds
	}
	preStop, err := preStopDuration(c)
	if err != nil {
		p.add(ref, "%v", err)
	} else if time.Duration(grace)*time.Second <= cfg.drain+preStop {
		p.add(ref, "terminationGracePeriodSeconds (%d) must be longer than drain.timeout (%s) + the preStop delay (%s): the kubelet kills the gateway when the grace period ends, cutting the streams that the drain waits for",
			grace, cfg.drain, preStop)
	}

	// Environment variables the configuration reads.
	provided, external := envSources(s, c)
	for _, name := range sortedKeys(cfg.envs) {
		if !provided[name] && !external {
			p.add(ref, "%s names environment variable %s, which the container does not set (env or envFrom)", cfg.envs[name], name)
		}
	}
	// Files the configuration reads: on a volume, and present when the volume is rendered.
	for _, f := range sortedKeys(cfg.files) {
		abs := resolve(configPath, f)
		m, rel, ok := mountOf(c, abs)
		if !ok {
			p.add(ref, "%s is %s, which is on no volume of the container (the root file system is the image's)", cfg.files[f], abs)
			continue
		}
		if !fileOnVolume(s, volumes[m.Name], rel) {
			p.add(ref, "%s is %s, but volume %q does not hold %s", cfg.files[f], abs, m.Name, rel)
		}
	}

	// Hardening the chart promises.
	sc := c.SecurityContext
	podSC := w.spec.SecurityContext
	nonRoot := sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot || (sc == nil || sc.RunAsNonRoot == nil) && podSC != nil && podSC.RunAsNonRoot != nil && *podSC.RunAsNonRoot
	if !nonRoot {
		p.add(ref, "must run with runAsNonRoot: true")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		p.add(ref, "must run with readOnlyRootFilesystem: true")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p.add(ref, "must run with allowPrivilegeEscalation: false")
	}
	for i, a := range c.Args {
		if (a == "--workers" || a == "-w") && i+1 < len(c.Args) {
			if n, err := strconv.Atoi(c.Args[i+1]); err != nil || n < 1 || n > 256 {
				p.add(ref, "--workers %s: must be 1 to 256", c.Args[i+1])
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// preStopDuration tells how long the preStop hook delays SIGTERM: a sleep action, or an
// exec of `sleep N` (directly or through sh -c).
func preStopDuration(c *corev1.Container) (time.Duration, error) {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return 0, nil
	}
	h := c.Lifecycle.PreStop
	if h.Sleep != nil {
		return time.Duration(h.Sleep.Seconds) * time.Second, nil
	}
	if h.Exec != nil {
		cmd := h.Exec.Command
		if len(cmd) == 3 && (path.Base(cmd[0]) == "sh" || path.Base(cmd[0]) == "bash") && cmd[1] == "-c" {
			cmd = strings.Fields(cmd[2])
		}
		if len(cmd) == 2 && path.Base(cmd[0]) == "sleep" {
			if n, err := strconv.ParseFloat(cmd[1], 64); err == nil && n >= 0 {
				return time.Duration(n * float64(time.Second)), nil
			}
		}
		return 0, fmt.Errorf("cannot tell how long the preStop command %q takes (use `sleep N` or the sleep action)", h.Exec.Command)
	}
	return 0, fmt.Errorf("cannot tell how long the preStop hook takes (use `sleep N` or the sleep action)")
}

// envSources returns the variables the container sets for certain, and whether it also
// takes variables from a Secret or ConfigMap that is not in the manifests (whose keys
// cannot be known here).
func envSources(s *objectSet, c *corev1.Container) (map[string]bool, bool) {
	provided := map[string]bool{}
	external := false
	for _, e := range c.Env {
		provided[e.Name] = true
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.SecretRef != nil:
			sec, ok := s.secrets[from.SecretRef.Name]
			if !ok {
				external = true
				continue
			}
			for _, k := range secretKeys(sec) {
				provided[from.Prefix+k] = true
			}
		case from.ConfigMapRef != nil:
			cm, ok := s.configMaps[from.ConfigMapRef.Name]
			if !ok {
				external = true
				continue
			}
			for k := range cm.Data {
				provided[from.Prefix+k] = true
			}
		}
	}
	return provided, external
}

// fileOnVolume: whether a rendered ConfigMap or Secret volume holds the file rel. A
// volume whose content is not in the manifests (a Secret you manage, an emptyDir) is
// taken on trust.
func fileOnVolume(s *objectSet, v corev1.Volume, rel string) bool {
	keyOf := func(items []corev1.KeyToPath) (string, bool) {
		if len(items) == 0 {
			return rel, true
		}
		for _, it := range items {
			if it.Path == rel {
				return it.Key, true
			}
		}
		return "", false
	}
	switch {
	case v.ConfigMap != nil:
		cm, ok := s.configMaps[v.ConfigMap.Name]
		if !ok {
			return true
		}
		key, ok := keyOf(v.ConfigMap.Items)
		if !ok {
			return false
		}
		_, inData := cm.Data[key]
		_, inBinary := cm.BinaryData[key]
		return inData || inBinary
	case v.Secret != nil:
		sec, ok := s.secrets[v.Secret.SecretName]
		if !ok {
			return true
		}
		key, ok := keyOf(v.Secret.Items)
		if !ok {
			return false
		}
		_, found := secretValue(sec, key)
		return found
	}
	return true
}

func checkService(p *problems, svc *corev1.Service, ws []workload) {
	ref := "Service/" + svc.Name
	targets := selectedBySet(svc.Spec.Selector, ws)
	if len(targets) == 0 {
		p.add(ref, "its selector matches no rendered workload")
		return
	}
	names := map[string]bool{}
	for _, sp := range svc.Spec.Ports {
		if len(svc.Spec.Ports) > 1 && sp.Name == "" {
			p.add(ref, "port %d needs a name (the Service has several ports)", sp.Port)
		}
		if names[sp.Name] {
			p.add(ref, "port name %q is used twice", sp.Name)
		}
		names[sp.Name] = true
		target := sp.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(sp.Port)
		}
		for _, w := range targets {
			found := false
			for _, c := range allContainers(w.spec) {
				if cp, ok := findPort(c, target); ok {
					found = true
					checkServedPort(p, ref, sp, w, c, cp)
				}
			}
			if !found {
				p.add(ref, "port %q targets %s, which no container of %s declares", sp.Name, target.String(), w.ref)
			}
		}
	}
}

// checkServedPort: a Service port that reaches the gateway must reach a listener (or the
// admin listener) that is bound to an address other pods can reach.
func checkServedPort(p *problems, ref string, sp corev1.ServicePort, w workload, c *corev1.Container, cp corev1.ContainerPort) {
	if c.Name != "sparkgate" {
		return
	}
	cfg := gatewayConfigOf(w, c)
	if cfg == nil {
		return // reported by checkGateway
	}
	var eps []endpoint
	for _, l := range append(append([]endpoint{}, cfg.listeners...), cfg.admin) {
		if l.port == int(cp.ContainerPort) {
			eps = append(eps, l)
		}
	}
	for _, e := range eps {
		if e.loopback() {
			p.add(ref, "port %q reaches the gateway's %s, which is bound to loopback: nothing outside the pod can connect", sp.Name, e)
		}
	}
}

func gatewayConfigOf(w workload, c *corev1.Container) *gatewayConfig {
	return w.set.gateways[c]
}
