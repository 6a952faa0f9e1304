module kapi

go 1.26
