#pragma once
#include "../emulate.hpp"
