//! sysfs discovery: mediated-device parents, types and instances; PCI devices and groups.
