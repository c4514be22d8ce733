terraform {
  # 1.9: validation blocks may refer to other variables and to locals (the catalogue).
  required_version = ">= 1.9"
}
