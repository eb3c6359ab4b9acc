#!/usr/bin/env bash
# Writes each role's README.md from its meta/argument_specs.yml with aar-doc (in
# requirements-dev.txt): the part between the BEGIN/END_ANSIBLE_DOCS markers is
# generated (aar-doc's Markdown, through role-readme.j2), the lines above it are the
# role's own. Run it after changing a spec;
# playbooks/tests/test_docs.py fails when a README is not what this writes.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for role in roles/*/; do
  role=${role%/}
  readme=$role/README.md
  if [ ! -e "$readme" ]; then
    cat > "$readme" <<README
flaskdeploy's \`$(basename "$role")\` role. Which playbook runs it, and how the roles fit
together: [docs/where-is.md](../../docs/where-is.md). What follows is generated from
\`meta/argument_specs.yml\` by \`molecule/scripts/role-docs.sh\`; \`defaults/main.yml\`
has the same defaults, with comments.

<!-- BEGIN_ANSIBLE_DOCS -->
<!-- END_ANSIBLE_DOCS -->
README
  fi
  # On a copy outside the repository: aar-doc would name the role by the collection's
  # FQCN and version (galaxy.yml); the READMEs use the short names a clone runs.
  copy=$work/$(basename "$role")
  cp -r "$role" "$copy"
  aar-doc --output-template molecule/scripts/role-readme.j2 "$copy" markdown >/dev/null
  cp "$copy/README.md" "$readme"
done
