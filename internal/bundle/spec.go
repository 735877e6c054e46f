package bundle

import (
	"fmt"
	"os"

	"github.com/bakeryhq/bakery/internal/spec"
)

// maxKeyFileBytes bounds ca_file and pgp_key_file.
const maxKeyFileBytes = 1 << 20

// FromSpec converts a spec's bundle block into Settings, reading its
// ca_file and pgp_key_file. Errors point at the block's attribute.
func FromSpec(b *spec.Bundle) (Settings, error) {
	s := Settings{
		Name: b.Name, Version: b.Version, Role: b.Role, Datacenter: b.Datacenter, Region: b.Region, Domain: b.Domain,
		RetryJoin: append(append([]string(nil), b.RetryJoin...), b.Servers...), BootstrapExpect: b.BootstrapExpect,
		Secrets: b.Secrets, VaultAddr: b.VaultAddr, RoleID: b.RoleID, AppRole: b.AppRole, SecretIDFile: b.SecretIDFile,
		GossipKeySecret: b.GossipKeySecret, AgentTokenSecret: b.AgentTokenSecret, ConsulPKIPath: b.ConsulPKIPath,
		NomadPKIPath: b.NomadPKIPath, NomadGossipSecret: b.NomadGossipSecret, AutoConfigRole: b.AutoConfigRole,
		Templates: b.Templates, Mirror: b.Mirror, ExtraConfig: b.ExtraConfig,
		NomadConsulTokenSecret: b.NomadConsulTokenSecret, PrometheusConsulTokenSecret: b.PrometheusConsulTokenSecret, RegistrationTokenSecret: b.RegistrationTokenSecret,
	}
	for _, t := range b.Template {
		s.CustomTemplates = append(s.CustomTemplates, Template{Destination: t.Destination, Contents: t.Contents, Perms: t.Perms, Command: t.Command})
	}
	var err error
	if b.CAFile != "" {
		if s.CACert, err = readKeyFile(b.CAFile); err != nil {
			return s, b.Errorf("ca_file", "ca_file: %v", err)
		}
	}
	if b.PGPKeyFile != "" {
		if s.PGPKey, err = readKeyFile(b.PGPKeyFile); err != nil {
			return s, b.Errorf("pgp_key_file", "pgp_key_file: %v", err)
		}
	}
	return s, nil
}

func readKeyFile(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxKeyFileBytes {
		return nil, fmt.Errorf("%s is %d bytes; a certificate or key file is far smaller", p, fi.Size())
	}
	return os.ReadFile(p)
}

// PlanFromSpec builds a plan from every bundle block of a spec.
func PlanFromSpec(s *spec.Spec) (*Plan, error) { return PlanFromBundles(s.Bundles) }

// PlanFromBundles builds a plan from bundle blocks (a spec's, or a
// `bakery pkg --config` file's).
func PlanFromBundles(bundles []spec.Bundle) (*Plan, error) {
	p := &Plan{}
	for i := range bundles {
		set, err := FromSpec(&bundles[i])
		if err != nil {
			return nil, err
		}
		p.Bundles = append(p.Bundles, set)
	}
	return p, nil
}
