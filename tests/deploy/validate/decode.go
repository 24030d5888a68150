package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// object is one decoded document.
type object struct {
	index int // 1-based document number in the file
	kind  string
	meta  metav1.Object
	obj   runtime.Object
}

func (o object) ref() string { return fmt.Sprintf("%s/%s", o.kind, o.meta.GetName()) }

// objectSet is every object of one file, by type.
type objectSet struct {
	file            string
	all             []object
	deployments     []*appsv1.Deployment
	jobs            []*batchv1.Job
	pods            []*corev1.Pod
	services        []*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	serviceMonitors []*monitoringv1.ServiceMonitor
	// The parsed configuration of each gateway container, filled by checkGateway.
	gateways map[*corev1.Container]*gatewayConfig
}

func (s *objectSet) summary() string {
	refs := make([]string, 0, len(s.all))
	for _, o := range s.all {
		refs = append(refs, o.ref())
	}
	return fmt.Sprintf("%d objects (%s)", len(s.all), strings.Join(refs, ", "))
}

var decoder runtime.Decoder

func init() {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	decoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
}

// loadFile decodes every document of a multi-document YAML file strictly. Empty
// documents (helm template separators, comments only) are skipped; any other problem is
// returned as one error listing all of them.
func loadFile(file string) (*objectSet, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	set := &objectSet{file: file, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		gateways: map[*corev1.Container]*gatewayConfig{}}
	var problems []string
	reader := kyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	seen := map[string]int{}
	for index := 1; ; index++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %v", index, err)
		}
		if asJSON, err := yaml.YAMLToJSON(doc); err == nil && (string(asJSON) == "null" || len(bytes.TrimSpace(asJSON)) == 0) {
			continue
		}
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			// With Strict, an unknown or duplicate field comes back as an error next to a
			// decoded object: it is still a failure.
			what := fmt.Sprintf("document %d", index)
			if gvk != nil && gvk.Kind != "" {
				what += " (" + gvk.Kind + ")"
			}
			problems = append(problems, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		meta, ok := obj.(metav1.Object)
		if !ok {
			problems = append(problems, fmt.Sprintf("document %d: %s has no object metadata", index, gvk.Kind))
			continue
		}
		o := object{index: index, kind: gvk.Kind, meta: meta, obj: obj}
		key := gvk.GroupKind().String() + "/" + meta.GetNamespace() + "/" + meta.GetName()
		if prev, dup := seen[key]; dup {
			problems = append(problems, fmt.Sprintf("document %d: %s is already defined by document %d", index, o.ref(), prev))
		}
		seen[key] = index
		set.all = append(set.all, o)
		switch t := obj.(type) {
		case *appsv1.Deployment:
			set.deployments = append(set.deployments, t)
		case *batchv1.Job:
			set.jobs = append(set.jobs, t)
		case *corev1.Pod:
			set.pods = append(set.pods, t)
		case *corev1.Service:
			set.services = append(set.services, t)
		case *corev1.ConfigMap:
			set.configMaps[t.Name] = t
		case *corev1.Secret:
			set.secrets[t.Name] = t
		case *policyv1.PodDisruptionBudget:
			set.pdbs = append(set.pdbs, t)
		case *autoscalingv2.HorizontalPodAutoscaler:
			set.hpas = append(set.hpas, t)
		case *monitoringv1.ServiceMonitor:
			set.serviceMonitors = append(set.serviceMonitors, t)
		case *corev1.ServiceAccount:
		default:
			problems = append(problems, fmt.Sprintf("document %d: %s: this validator has no checks for kind %s; add them before using it", index, o.ref(), gvk.Kind))
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	if len(set.all) == 0 {
		return nil, errors.New("no Kubernetes objects in the file")
	}
	return set, nil
}

// secretValue returns a Secret's value for key, from data or stringData.
func secretValue(s *corev1.Secret, key string) ([]byte, bool) {
	if v, ok := s.StringData[key]; ok {
		return []byte(v), true
	}
	v, ok := s.Data[key]
	return v, ok
}

func secretKeys(s *corev1.Secret) []string {
	var keys []string
	for k := range s.Data {
		keys = append(keys, k)
	}
	for k := range s.StringData {
		if _, dup := s.Data[k]; !dup {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
