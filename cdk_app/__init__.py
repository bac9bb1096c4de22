"""RadStream's AWS CDK application: one construct per logical unit, composed by stacks."""
