"""template.yaml as CloudFormation resolves it: the template, its stack facts, provisioning and artifacts."""
