"""Network: a VPC over two or more AZs with private node subnets, NAT, the VPC
endpoints nodes need to pull images and ship logs without the internet, and flow logs."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_app.config import NetworkConfig

# Interface endpoints: image pulls (ECR), Pod Identity/IRSA tokens (STS), logs and
# metrics (CloudWatch), and the Cluster Autoscaler's calls (EC2, Auto Scaling).
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "Ec2": ec2.InterfaceVpcEndpointAwsService.EC2,
    "AutoScaling": ec2.InterfaceVpcEndpointAwsService.AUTOSCALING,
}


LOG_RETENTION: dict[int, logs.RetentionDays] = {
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
}


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: NetworkConfig, cluster_name: str) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(config.vpc_cidr),
            max_azs=config.max_azs,
            nat_gateways=config.nat_gateways,
            restrict_default_security_group=True,
            subnet_configuration=[
                # Public subnets hold only the NAT gateways (and internet-facing load
                # balancers if ever added); nothing launched there gets a public IP.
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24, map_public_ip_on_launch=False
                ),
                ec2.SubnetConfiguration(name="nodes", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20),
            ],
        )
        # Subnets by AZ ID, not by Fn::GetAZs order: AZ names map to different AZs in each
        # account, and the first two can be one EKS rejects or one without GPU capacity.
        # AWS::EC2::Subnet takes AvailabilityZoneId instead of AvailabilityZone.
        for subnets in (self.vpc.public_subnets, self.vpc.private_subnets):
            for subnet, az_id in zip(subnets, config.availability_zone_ids, strict=True):
                resource = subnet.node.default_child
                assert isinstance(resource, ec2.CfnSubnet)
                resource.add_property_deletion_override("AvailabilityZone")
                resource.availability_zone_id = az_id
        # Load balancer discovery tags (AWS Load Balancer Controller, EKS).
        for subnet in self.vpc.public_subnets:
            cdk.Tags.of(subnet).add("kubernetes.io/role/elb", "1")
        for subnet in self.vpc.private_subnets:
            cdk.Tags.of(subnet).add("kubernetes.io/role/internal-elb", "1")
            cdk.Tags.of(subnet).add(f"kubernetes.io/cluster/{cluster_name}", "shared")

        self.log_key = kms.Key(
            self,
            "FlowLogKey",
            enable_key_rotation=True,
            description="Encrypts the RadStream VPC flow logs",
        )
        self.log_key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com"))
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogGroup",
            retention=LOG_RETENTION[config.flow_log_retention_days],
            encryption_key=self.log_key,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        # One security group for the interface endpoints: HTTPS from inside the VPC only.
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="HTTPS from the VPC to the AWS service endpoints",
        )
        self.endpoint_security_group.add_ingress_rule(
            ec2.Peer.ipv4(config.vpc_cidr), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        self.endpoints = {
            name: self.vpc.add_interface_endpoint(
                name,
                service=service,
                private_dns_enabled=True,
                open=False,
                security_groups=[self.endpoint_security_group],
            )
            for name, service in INTERFACE_ENDPOINTS.items()
        }
