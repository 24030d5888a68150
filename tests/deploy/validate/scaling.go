package main

import (
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// checkHPA: the autoscaler targets a rendered Deployment that leaves its replica count to
// it, and utilization targets have the requests they are measured against.
func checkHPA(p *problems, s *objectSet, hpa *autoscalingv2.HorizontalPodAutoscaler) {
	ref := "HorizontalPodAutoscaler/" + hpa.Name
	min := int32(1)
	if hpa.Spec.MinReplicas != nil {
		min = *hpa.Spec.MinReplicas
	}
	if min < 1 || min > hpa.Spec.MaxReplicas {
		p.add(ref, "minReplicas (%d) must be from 1 to maxReplicas (%d)", min, hpa.Spec.MaxReplicas)
	}
	target := hpa.Spec.ScaleTargetRef
	if target.Kind != "Deployment" || target.APIVersion != "apps/v1" {
		p.add(ref, "scaleTargetRef is %s %s; expected an apps/v1 Deployment", target.APIVersion, target.Kind)
		return
	}
	var spec *corev1.PodSpec
	for _, d := range s.deployments {
		if d.Name == target.Name {
			spec = &d.Spec.Template.Spec
			if d.Spec.Replicas != nil {
				p.add(ref, "Deployment/%s sets spec.replicas; with an autoscaler every upgrade would reset the count the autoscaler chose", d.Name)
			}
		}
	}
	if spec == nil {
		p.add(ref, "scaleTargetRef names Deployment/%s, which is not in the manifests", target.Name)
		return
	}
	for _, m := range hpa.Spec.Metrics {
		if m.Type != autoscalingv2.ResourceMetricSourceType || m.Resource == nil || m.Resource.Target.Type != autoscalingv2.UtilizationMetricType {
			continue
		}
		for _, c := range spec.Containers {
			if _, ok := c.Resources.Requests[m.Resource.Name]; !ok {
				p.add(ref, "scales on %s utilization, but container %s has no %s request to measure it against", m.Resource.Name, c.Name, m.Resource.Name)
			}
		}
	}
}

// checkServiceMonitor: it selects a rendered Service, and each endpoint scrapes /metrics
// on a Service port that reaches the gateway's admin listener.
func checkServiceMonitor(p *problems, s *objectSet, sm *monitoringv1.ServiceMonitor, ws []workload) {
	ref := "ServiceMonitor/" + sm.Name
	selector, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		p.add(ref, "spec.selector: %v", err)
		return
	}
	var services []*corev1.Service
	for _, svc := range s.services {
		if !selector.Empty() && selector.Matches(labels.Set(svc.Labels)) {
			services = append(services, svc)
		}
	}
	if len(services) == 0 {
		p.add(ref, "its selector matches no rendered Service")
		return
	}
	if len(sm.Spec.Endpoints) == 0 {
		p.add(ref, "has no endpoints")
	}
	for i, ep := range sm.Spec.Endpoints {
		if ep.Path != "" && ep.Path != "/metrics" {
			p.add(ref, "endpoints[%d] scrapes %q; the gateway serves metrics at /metrics", i, ep.Path)
		}
		if ep.Scheme != nil && !strings.EqualFold(string(*ep.Scheme), "http") {
			p.add(ref, "endpoints[%d] uses scheme %s; the admin listener speaks plain HTTP", i, *ep.Scheme)
		}
		if ep.Port == "" {
			p.add(ref, "endpoints[%d] needs a port name", i)
			continue
		}
		for _, svc := range services {
			var sp *corev1.ServicePort
			for j := range svc.Spec.Ports {
				if svc.Spec.Ports[j].Name == ep.Port {
					sp = &svc.Spec.Ports[j]
				}
			}
			if sp == nil {
				p.add(ref, "endpoints[%d] names port %q, which Service/%s does not have", i, ep.Port, svc.Name)
				continue
			}
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			for _, w := range selectedBySet(svc.Spec.Selector, ws) {
				c, _ := gatewayContainer(w.spec)
				if c == nil {
					continue
				}
				cfg := gatewayConfigOf(w, c)
				cp, ok := findPort(c, target)
				if cfg == nil || !ok {
					continue // reported by checkGateway and checkService
				}
				if int(cp.ContainerPort) != cfg.admin.port {
					p.add(ref, "endpoints[%d] scrapes container port %d of %s, but /metrics is on the admin listener %s", i, cp.ContainerPort, w.ref, cfg.admin)
				}
			}
		}
	}
}
