# `info` opens the edu device through every IOMMU back end the kernel offers, and the
# reports agree with each other (info-raw compares them with the raw ioctls).
. /etc/vfioh/lib.sh
need EDU
info_across_backends "$EDU" edu
