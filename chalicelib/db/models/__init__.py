"""Every SQLAlchemy model, one module per service. Importing this package registers them all."""
from chalicelib.db.models.agents import AgentCommand
from chalicelib.db.models.compute import VmInstance, VmNic, Volume, VolumeSnapshot
from chalicelib.db.models.config import GlobalConfig
from chalicelib.db.models.datacenter import Cluster, Host, Zone
from chalicelib.db.models.identity import Account, Session, User
from chalicelib.db.models.jobs import ApiJob
from chalicelib.db.models.network import (
    IpRange,
    L2Network,
    L2NetworkClusterRef,
    L3Network,
    L3NetworkDns,
    UsedIp,
)
from chalicelib.db.models.network_services import (
    Eip,
    SecurityGroup,
    SecurityGroupL3NetworkRef,
    SecurityGroupRule,
    Vip,
    VmNicSecurityGroupRef,
)
from chalicelib.db.models.offering import DiskOffering, InstanceOffering
from chalicelib.db.models.storage import (
    BackupStorage,
    BackupStorageZoneRef,
    Image,
    ImageBackupStorageRef,
    PrimaryStorage,
    PrimaryStorageClusterRef,
)
from chalicelib.db.models.tags import SystemTag, UserTag

__all__ = [
    "Account", "AgentCommand", "ApiJob", "BackupStorage", "BackupStorageZoneRef", "Cluster",
    "DiskOffering",
    "Eip", "GlobalConfig", "Host", "Image", "ImageBackupStorageRef", "InstanceOffering",
    "IpRange", "L2Network", "L2NetworkClusterRef", "L3Network", "L3NetworkDns",
    "PrimaryStorage", "PrimaryStorageClusterRef", "SecurityGroup", "SecurityGroupL3NetworkRef",
    "SecurityGroupRule", "Session", "SystemTag", "UsedIp", "User", "UserTag", "Vip",
    "VmInstance", "VmNic", "VmNicSecurityGroupRef", "Volume", "VolumeSnapshot", "Zone",
]
